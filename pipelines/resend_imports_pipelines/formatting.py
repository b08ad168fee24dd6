"""How numbers and durations read in what the command prints for people: counts with
thousands separators everywhere (`10,035`), durations as `4m13s` or `1h10m` rather than
seconds. Machine formats (CSV, JSON) keep plain numbers."""


def count(number: int) -> str:
    return f"{number:,}"


def duration(seconds: float) -> str:
    """`42s`, `4m13s`, `1h10m`, `3d04h`: two units at most, read at a glance."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def elapsed(seconds: float) -> str:
    """A run's time: hundredths below a minute (`1.42s`), then as `duration`."""
    return f"{seconds:.2f}s" if seconds < 60 else duration(seconds)
