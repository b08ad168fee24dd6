"""The `resend-imports` command (`resend_imports_pipelines.cli:entry_point`)."""

from .main import entry_point, main

__all__ = ["entry_point", "main"]
