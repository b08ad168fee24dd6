"""Constants of the Resend contact imports source."""

from typing import Final

DEFAULT_BASE_URL: Final = "https://api.resend.com"
LIST_PATH: Final = "/contacts/imports"

# Environment variables of the official Resend SDKs, honoured as fallbacks.
API_KEY_ENV: Final = "RESEND_API_KEY"
API_URL_ENV: Final = "RESEND_API_URL"

MAX_PAGE_SIZE: Final = 100
DEFAULT_PAGE_SIZE: Final = 100

STATUSES: Final = ("queued", "in_progress", "completed", "failed")
TERMINAL_STATUSES: Final = frozenset({"completed", "failed"})
COUNT_FIELDS: Final = ("total", "created", "updated", "skipped", "failed")

# Fields of a ContactImport we know; anything else is logged as a schema change.
KNOWN_FIELDS: Final = frozenset({"object", "id", "status", "created_at", "completed_at", "counts"})

DEFAULT_MAX_ATTEMPTS: Final = 6
DEFAULT_INITIAL_BACKOFF_SECONDS: Final = 0.5
DEFAULT_MAX_BACKOFF_SECONDS: Final = 30.0
DEFAULT_MAX_RATE_LIMIT_WAIT_SECONDS: Final = 300.0
DEFAULT_CONNECT_TIMEOUT_SECONDS: Final = 10.0
DEFAULT_READ_TIMEOUT_SECONDS: Final = 30.0

# Answers worth another try; any other error status (400, 401, 403, 404, 422...) is final.
RETRYABLE_STATUSES: Final = frozenset({429, 500, 502, 503, 504})

# Rows handed to dlt at once (one Arrow table): large enough that dlt's per-item work is
# negligible, small enough to keep memory flat whatever the number of imports.
BATCH_ROWS: Final = 5000

# Log listing progress at most this often.
PROGRESS_EVERY_SECONDS: Final = 10.0

SOURCE_NAME: Final = "resend_imports"
# the name of the source, its schema and its state before it took the package's name
LEGACY_SOURCE_NAME: Final = "resend"
TABLE_NAME: Final = "contact_imports"
HISTORY_TABLE: Final = "contact_import_status_history"

# An import that answers 404 on this many consecutive runs is concluded gone (soft-deleted).
DEFAULT_GONE_AFTER_RUNS: Final = 3
# A complete listing at least this often catches what the frontier cannot see (a terminal
# import that changed, a deletion deep in history); 0 turns it off.
DEFAULT_FULL_REFRESH_EVERY_DAYS: Final = 7.0
# The status of the history row that records a deletion.
DELETED_STATUS: Final = "deleted"
