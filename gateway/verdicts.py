"""How a pre-commit function's verdict appears in an HTTP response.

Every write that a function judged answers with the verdict, whatever it was (stored,
routed, rejected, discarded): the annotations as ``x-amz-meta-squall-*`` headers (the
same names the stored object carries when the function annotates) and one JSON summary
in ``x-squall-verdict``.
"""

from __future__ import annotations

from storage import api

VERDICT_HEADER = "x-squall-verdict"


def _header_safe(value: str) -> str:
    # Header values are latin-1 on the wire; labels are expected to be ASCII, and
    # anything else is escaped as JSON would escape it rather than break the response.
    return value.encode("ascii", "backslashreplace").decode("ascii").replace("\n", " ")


def verdict_headers(verdict: api.Verdict) -> dict[str, str]:
    headers = {
        f"x-amz-meta-{name}": _header_safe(value) for name, value in verdict.annotations.items()
    }
    headers[VERDICT_HEADER] = verdict.summary_json()
    return headers


def discarded_response_headers(verdict: api.Verdict) -> dict[str, str]:
    """A discarded write: 200 with the verdict, nothing stored (no ETag, no version)."""
    return verdict_headers(verdict)
