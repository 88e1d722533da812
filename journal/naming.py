"""Ids and times as they appear in paths and projections."""

from __future__ import annotations

import datetime as _dt
import os
import re
import time

from .errors import InvalidId

# C0 and C1 control characters (Unicode category Cc); U+0085 is a line break, for one
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # C0, C1, and the Unicode line and paragraph separators
MAX_ID_LEN = 200


def validate_id(value: str, kind: str = "id") -> str:
    """Return ``value`` if it is safe as one path component, else raise InvalidId."""
    if not isinstance(value, str) or value == "":
        raise InvalidId(f"{kind} must not be empty")
    if len(value) > MAX_ID_LEN:
        raise InvalidId(f"{kind} {value[:40]!r}... is longer than {MAX_ID_LEN} characters")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # undecodable bytes from argv or the environment (surrogate escapes)
        raise InvalidId(f"{kind} {value!r} is not valid UTF-8") from None
    if size > MAX_ID_LEN:  # a path component holds 255 bytes, not characters
        raise InvalidId(f"{kind} {value[:40]!r}... is {size} bytes as UTF-8, longer than {MAX_ID_LEN}")
    if "/" in value or "\\" in value:
        raise InvalidId(f"{kind} {value!r} must not contain '/' or '\\'")
    if ".." in value:
        raise InvalidId(f"{kind} {value!r} must not contain '..'")
    if value.startswith("."):
        raise InvalidId(f"{kind} {value!r} must not start with '.'")
    if _CONTROL.search(value):
        raise InvalidId(f"{kind} {value!r} must not contain control characters")
    return value


def validate_task_id(value: str) -> str:
    return validate_id(value, "task id")


def validate_run_id(value: str) -> str:
    return validate_id(value, "run id")


def new_run_id(ts_ns: int | None = None) -> str:
    """A sortable run id: UTC time with milliseconds, then 8 random hex digits."""
    ts_ns = time.time_ns() if ts_ns is None else ts_ns
    t = _dt.datetime.fromtimestamp(ts_ns // 1_000_000_000, _dt.timezone.utc)
    ms = (ts_ns // 1_000_000) % 1000
    return f"{t:%Y-%m-%dT%H-%M-%S}-{ms:03d}Z-{os.urandom(4).hex()}"


def iso_utc(ts_ns: int) -> str:
    """ISO-8601 UTC with milliseconds, as Codex Orchestrator writes times."""
    t = _dt.datetime.fromtimestamp(ts_ns // 1_000_000_000, _dt.timezone.utc)
    ms = (ts_ns // 1_000_000) % 1000
    return f"{t:%Y-%m-%dT%H:%M:%S}.{ms:03d}Z"


def parse_iso(text: str) -> int:
    """Nanoseconds since the epoch for an ISO-8601 time (UTC when no zone is given)."""
    t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return int(t.timestamp() * 1_000_000) * 1000


#: the units a duration may be given in, in seconds
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``30m``, ``2h``, ``7d``, ``1w``, ``1.5d``;
    ValueError if it is not one."""
    text = text.strip()
    number, unit = text[:-1], text[-1:].lower()
    digits = number.replace(".", "", 1)
    if unit not in DURATION_UNITS or not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"{text!r} is not a duration (90s, 30m, 2h, 7d, 1w)")
    return float(number) * DURATION_UNITS[unit]
