"""One simulated contact import, and its JSON in the timestamp styles Resend has used."""

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, Optional, Tuple

TIMESTAMP_STYLES = ("seconds", "millis", "micros", "iso")


@dataclass
class SimImport:
    id: str
    created_at: datetime
    style: str
    status: str = "queued"
    completed_at: Optional[datetime] = None
    counts: Optional[Dict[str, int]] = None
    # the encoded JSON, kept until a field changes: pages are served from it
    _encoded: Optional[bytes] = field(default=None, init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "_encoded":
            object.__setattr__(self, "_encoded", None)
        object.__setattr__(self, name, value)

    def encoded(self) -> bytes:
        """`to_json()` as compact JSON bytes."""
        if self._encoded is None:
            self._encoded = json.dumps(self.to_json(), separators=(",", ":")).encode()
        return self._encoded

    def sort_key(self) -> Tuple[datetime, str]:
        return (self.created_at, self.id)

    def to_json(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {
            "object": "contact_import",
            "id": self.id,
            "status": self.status,
            "created_at": format_timestamp(self.created_at, self.style),
            "completed_at": (
                format_timestamp(self.completed_at, self.style) if self.completed_at else None
            ),
        }
        if self.counts is not None:
            body["counts"] = dict(self.counts)
        return body


def format_timestamp(value: datetime, style: str) -> str:
    """Resend's PostgreSQL-style text with 0, 3 or 6 fractional digits, or older ISO."""
    base = value.strftime("%Y-%m-%d %H:%M:%S")
    if style == "seconds":
        return f"{base}+00"
    if style == "millis":
        return f"{base}.{value.microsecond // 1000:03d}+00"
    if style == "micros":
        return f"{base}.{value.microsecond:06d}+00"
    return value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond // 1000:03d}Z"


def truncate(value: datetime, style: str) -> datetime:
    if style == "seconds":
        return value.replace(microsecond=0)
    if style in ("millis", "iso"):
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value
