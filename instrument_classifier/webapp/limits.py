"""The web app's limits on what a request may hold, and the message of a 413.

Shared by the app (:mod:`webapp`) and its waitress server (:mod:`webapp.server`).
"""

from __future__ import annotations

# Uploaded files larger than this are refused with 413.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# Room for the multipart envelope around the file.
FORM_OVERHEAD_BYTES = 64 * 1024
# Request bodies larger than this are refused by waitress from their
# Content-Length, before a byte of the body is read.
MAX_REQUEST_BYTES = MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES
# The forms have one or two parts (the file, an example id) and short text
# fields.  The field limit also bounds werkzeug's buffer of file data, which
# takes 64 kB reads: it must stay well above that.
MAX_FORM_PARTS = 16
MAX_FORM_FIELD_BYTES = 256 * 1024
# Decoded per upload: the first 60 s, and at most 60 s of 48 kHz stereo in
# samples x channels (a 343 kB FLAC of silence can hold a minute of 8-channel
# 655 kHz audio: 315 M samples, 13 s and 2 GB when it was read whole).
MAX_UPLOAD_SECONDS = 60.0
MAX_UPLOAD_SAMPLES = 60 * 48_000 * 2


def request_too_large_message(size: int | None, upload_limit: int = MAX_UPLOAD_BYTES) -> str:
    limit = f"the {upload_limit / 1024 / 1024:g} MB upload limit"
    return f"request too large: {size / 1024 / 1024:,.1f} MB, over {limit}" if size else \
        f"request too large: over {limit}"
