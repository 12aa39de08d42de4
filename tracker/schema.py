"""The event schema (v2): columns, event types, and validation at the boundary.

Every event, whatever its type, has the same columns; a column that does not
apply to a type is null. Inside the writer an event travels as a *row*: a tuple
in ``ROW_FIELDS`` order. ``writer_id``, ``schema_version`` and ``event_id`` are
added when rows are turned into Arrow (see ``_files/rows.py``): they are the
same for every row of a writer, or derived from other columns.

The documented form of this schema lives in ``schemas/`` at the repository top
(JSON Schema, a readable table, golden events); a test keeps the two in step.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from hptrack.errors import InvalidEvent

if TYPE_CHECKING:
    import pyarrow as pa

SCHEMA_VERSION = 2
# v2 changed only the text form of event_id (see _files/rows.py); readers accept
# every version up to SCHEMA_VERSION, and a v1 log's rows keep v1-form ids.

EVENT_TYPES = (
    "search_started",
    "trial_started",
    "trial_reported",
    "trial_completed",
    "trial_pruned",
    "trial_failed",
    "trial_scored",
    "trial_forked",
    "search_finished",
    "annotation",
)

# Order of the fields of a row, as the writer keeps and logs it.
ROW_FIELDS = (
    "seq", "ts", "type", "search_id", "trial_id", "trial_number", "step",
    "resource", "value", "metric", "split", "fold", "params", "payload",
)
# Column order of the stored Parquet files.
COLUMNS = (
    "event_id", "schema_version", "ts", "writer_id", "seq", "search_id",
    "trial_id", "trial_number", "type", "step", "resource", "value", "metric",
    "split", "fold", "params", "payload",
)

# Fields each type must carry beyond search_id (which every event carries).
_REQUIRED = {
    "search_started": ("payload",),
    "trial_started": ("trial_id",),
    "trial_reported": ("trial_id", "step", "value"),
    "trial_completed": ("trial_id", "value"),
    "trial_pruned": ("trial_id",),
    "trial_failed": ("trial_id", "payload"),
    "trial_scored": ("trial_id", "value", "split"),
    "trial_forked": ("trial_id", "payload"),
    "search_finished": (),
    "annotation": ("payload",),
}
_INPUT_FIELDS = frozenset(ROW_FIELDS) - {"seq"}
INT16 = 2**15
INT32 = 2**31
INT64 = 2**63
EXACT_FLOAT_INT = 2**53
# timestamps must be representable as datetimes: years 1 to 9999
_MIN_US = -62_135_596_800_000_000
_MAX_US = 253_402_300_799_999_999


def arrow_schema() -> pa.Schema:
    """The Arrow schema of a stored event file (pyarrow is imported lazily)."""
    import pyarrow as pa

    param = pa.struct([
        ("name", pa.string()), ("kind", pa.string()),
        ("num", pa.float64()), ("str", pa.string()),
    ])
    return pa.schema([
        ("event_id", pa.string()),
        ("schema_version", pa.int16()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("writer_id", pa.string()),
        ("seq", pa.int64()),
        ("search_id", pa.string()),
        ("trial_id", pa.string()),
        ("trial_number", pa.int32()),
        ("type", pa.string()),
        ("step", pa.int64()),
        ("resource", pa.float64()),
        ("value", pa.float64()),
        ("metric", pa.string()),
        ("split", pa.string()),
        ("fold", pa.int16()),
        ("params", pa.list_(param)),
        ("payload", pa.string()),
    ])


# --- params -----------------------------------------------------------------

def encode_param(name: str, value: Any) -> list:
    """One typed parameter as ``[name, kind, num, str]``.

    Ints keep their exact decimal text in ``str`` when a float64 cannot hold
    them, so nothing is silently rounded.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"param name {name!r}: names must be non-empty strings")
    if not name.isascii():
        check_text(f"param name {name!r}", name, TypeError)
    t = type(value)  # exact-type checks first: the ABC isinstance checks are slow
    if t is float:
        return [name, "float", value, None]
    if t is int and -EXACT_FLOAT_INT <= value <= EXACT_FLOAT_INT:
        return [name, "int", float(value), None]
    if t is str and value.isascii():
        return [name, "str", None, value]
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, np.generic):
        value = _numpy_scalar(name, value)
    if value is None:
        return [name, "null", None, None]
    if isinstance(value, bool):
        return [name, "bool", float(value), None]
    if isinstance(value, numbers.Integral):
        value = int(value)
        if abs(value) <= EXACT_FLOAT_INT:
            return [name, "int", float(value), None]
        # beyond float64's exact range the decimal text is the value; num is a guide
        try:
            num = float(value)
        except OverflowError:
            num = math.inf if value > 0 else -math.inf
        return [name, "int", num, str(value)]
    if isinstance(value, numbers.Real):
        return [name, "float", float(value), None]
    if isinstance(value, str):
        return [name, "str", None, storable(str(value))]
    raise TypeError(
        f"param {name!r}: cannot store a {type(value).__name__} ({value!r:.80}); "
        "params may be int, float, bool, str, None or numpy scalars - "
        "pass str(value) or a number instead"
    )


def _numpy_scalar(name: str, value: Any) -> Any:
    """The Python value of a numpy scalar, refusing what Python numbers cannot hold exactly."""
    if isinstance(value, (np.datetime64, np.timedelta64)):
        raise TypeError(f"param {name!r}: cannot store a numpy {value.dtype} ({value}); "
                        "pass str(value) or a number instead")
    if isinstance(value, np.floating) and value.dtype.itemsize > 8:
        as_float = float(value)
        if not (np.isnan(value) or value == as_float):
            raise TypeError(f"param {name!r}: the {value.dtype} {value!r} does not fit a float64 "
                            "exactly; pass float(value) or str(value)")
        return as_float
    return value.item()


def encode_params(params: dict[str, object] | None) -> list[list] | None:
    if params is None:
        return None
    if not isinstance(params, dict):
        raise InvalidEvent(f"event field 'params': expected a dict of name -> value, got {type(params).__name__}")
    return [encode_param(k, v) for k, v in params.items()]


def decode_param(kind: str, num: Any, text: str | None) -> object:
    """The Python value of a stored param (inverse of :func:`encode_param`)."""
    if kind == "null":
        return None
    if kind == "bool":
        return bool(num)
    if kind == "int":
        return int(text) if text is not None else int(num)
    if kind == "float":
        return num
    return text


# --- validation -------------------------------------------------------------

def _bad(field: str, expected: str, got: object) -> InvalidEvent:
    return InvalidEvent(f"event field {field!r}: expected {expected}, got {type(got).__name__} {got!r:.80}")


# --- ids and text -------------------------------------------------------------

ID_MAX_BYTES = 200
# What an id must never hold: it names a folder (search=<id>, so it must fit a
# file name: 255 bytes), goes into DuckDB file lists (where * ? [ ] { } are glob
# syntax), and is matched as text.
_ID_BAD = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff/\\*?\[\]{}]|\.\.")
# What readers of a log leave out (pyarrow's RE2 syntax): the same characters, but
# not '..', which cannot leave a folder without a '/' and which hptrack before
# schema v2 put in ids derived from names such as 'a..b'.
ID_UNSAFE_RE2 = r"[\x00-\x1f\x7f-\x{9f}\x{2028}\x{2029}/\\*?\[\]{}]"
_ID_UNSAFE = re.compile(_ID_BAD.pattern[:-len(r"|\.\.")])
ID_RULE = (f"an id is 1 to {ID_MAX_BYTES} bytes of valid Unicode (UTF-8) without control characters "
           "(NUL, newlines, ...), '/', '\\', '..', or the glob characters * ? [ ] { }")


def id_problem(v: object, reading: bool = False) -> str | None:
    """Why ``v`` cannot be a search_id or trial_id, or None if it can
    (``reading``: why a reader leaves a logged row with it out, see ID_UNSAFE_RE2)."""
    if not isinstance(v, str):
        return f"an id must be a str, not {type(v).__name__}"
    if not v:
        return "an id must not be empty"
    bad = (_ID_UNSAFE if reading else _ID_BAD).search(v)
    if bad:
        return f"it holds {bad.group()!r} at position {bad.start()}"
    size = len(v.encode("utf-8"))
    if size > ID_MAX_BYTES:
        return f"it is {size} bytes long in UTF-8 (at most {ID_MAX_BYTES})"
    return None


def check_id(field: str, v: Any, error: type[Exception] = InvalidEvent, reading: bool = False) -> str:
    """``v`` if it is a safe id (see ``ID_RULE``), else ``error`` naming it and the rule."""
    if type(v) is str and 0 < len(v) <= 32 and v.isalnum() and v.isascii():
        return v  # the ids hptrack makes itself (hex, slugs without dots) take this path
    why = id_problem(v, reading)
    if why is not None:
        raise error(f"{'event field ' if error is InvalidEvent else ''}{field!r}: {v!r:.80} is not a "
                    f"valid id: {why}; {ID_RULE}")
    return v


def storable(v: str) -> str:
    """``v`` as stored: valid Unicode text stays as it is; each lone surrogate
    (which UTF-8, Parquet and DuckDB cannot hold) becomes the 6 characters of its
    ``\\udXXX`` escape, as Python's ``backslashreplace`` error handler writes it."""
    if v.isascii():
        return v
    try:
        v.encode("utf-8")
        return v
    except UnicodeEncodeError:
        return v.encode("utf-8", "backslashreplace").decode("utf-8")


def check_text(what: str, v: str, error: type[Exception] = InvalidEvent) -> str:
    """``v`` unless it cannot be stored as UTF-8 (lone surrogates)."""
    if not v.isascii():
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise error(f"{what}: text is not valid Unicode ({exc.reason} at position {exc.start}); "
                        "remove the lone surrogate characters") from None
    return v


def check_int(field: str, v: object, bound: int, error: type[Exception] = InvalidEvent) -> int:
    """``v`` as an int if it is one and fits in a signed integer of ``bound``."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise _bad(field, "an integer", v) if error is InvalidEvent else error(
            f"{field} must be an int, got {type(v).__name__} {v!r:.80}")
    v = int(v)
    if not -bound <= v < bound:
        raise error(f"{'event field ' if error is InvalidEvent else ''}{field!r}: {v} is out of range "
                    f"(must fit in a signed {bound.bit_length()}-bit integer)")
    return v


def _opt_str(ev: dict, field: str) -> str | None:
    v = ev.get(field)
    if v is not None:
        if not isinstance(v, str):
            raise _bad(field, "a string", v)
        check_text(f"event field {field!r}", v)
    return v


def _opt_int(ev: dict, field: str, bound: int) -> int | None:
    v = ev.get(field)
    return None if v is None else check_int(field, v, bound)


def _opt_float(ev: dict, field: str) -> float | None:
    v = ev.get(field)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise _bad(field, "a number", v)
    return float(v)


def to_micros(ts: object) -> int:
    """Microseconds since the epoch (UTC) from a datetime, or an int already in us."""
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise InvalidEvent("event field 'ts': naive datetime; give it a timezone (e.g. timezone.utc)")
        delta = ts - datetime(1970, 1, 1, tzinfo=timezone.utc)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(ts, numbers.Integral) and not isinstance(ts, bool):
        us = int(ts)
        if not _MIN_US <= us <= _MAX_US:
            raise InvalidEvent(f"event field 'ts': {ts} microseconds is outside years 1 to 9999")
        return us
    raise _bad("ts", "a timezone-aware datetime or microseconds since the epoch", ts)


def encode_payload(payload: object) -> str | None:
    """Payload JSON text. Any str in it is stored as :func:`storable` makes it:
    a lone surrogate (an exception message naming an undecodable file) becomes
    its ``\\udXXX`` text, since DuckDB's JSON functions refuse a lone ``\\udXXX``
    escape and UTF-8 cannot hold the character itself."""
    if payload is None:
        return None
    if isinstance(payload, str):
        try:
            value = json.loads(payload)
        except ValueError as exc:
            raise InvalidEvent(f"event field 'payload': not valid JSON ({exc})") from None
        if _may_hold_surrogates(payload):
            return _dumps(_storable_json(value))
        return payload
    try:
        text = _dumps(payload, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"event field 'payload': cannot be stored as JSON ({exc})") from None
    if "\\ud" in text:  # an astral character (a valid pair), or maybe a lone surrogate
        # parsed back from raw text, not from the escapes: two lone surrogates side by side
        # would read as the one astral character their escapes spell
        raw = json.dumps(payload, default=_json_default, allow_nan=True, ensure_ascii=False)
        text = _dumps(_storable_json(json.loads(raw)))
    return text


def _dumps(value: object, default: Callable[[Any], Any] | None = None) -> str:
    return json.dumps(value, default=default, allow_nan=True, separators=(",", ":"))


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _may_hold_surrogates(text: str) -> bool:
    """Whether JSON ``text`` may hold a lone surrogate, escaped or not (a valid pair also counts)."""
    return ("\\u" in text and _SURROGATE_ESCAPE.search(text) is not None) or storable(text) is not text


def _storable_json(v: Any) -> Any:
    """A parsed JSON value with every string (keys too) made :func:`storable`."""
    if isinstance(v, str):
        return storable(v)
    if isinstance(v, list):
        return [_storable_json(x) for x in v]
    if isinstance(v, dict):
        return {storable(k): _storable_json(x) for k, x in v.items()}
    return v


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def validate(event: dict, now_us: int) -> tuple:
    """Check one event given as a dict and return it as a row without ``seq``.

    Raises :class:`InvalidEvent` naming the first field that is wrong.
    """
    if not isinstance(event, dict):
        raise InvalidEvent(f"an event must be a dict, got {type(event).__name__}")
    unknown = set(event) - _INPUT_FIELDS
    if unknown:
        raise InvalidEvent(
            f"event field {sorted(unknown)[0]!r} is not in schema v{SCHEMA_VERSION}; "
            f"known fields: {', '.join(sorted(_INPUT_FIELDS))}"
        )
    etype = event.get("type")
    if etype not in EVENT_TYPES:
        raise InvalidEvent(f"event field 'type': {etype!r} is not one of {', '.join(EVENT_TYPES)}")
    search_id = event.get("search_id")
    if not isinstance(search_id, str) or not search_id:
        raise _bad("search_id", "a non-empty string", search_id)
    check_id("search_id", search_id)
    trial_id = event.get("trial_id")
    if trial_id is not None:
        if not isinstance(trial_id, str):
            raise _bad("trial_id", "a string", trial_id)
        check_id("trial_id", trial_id)
    for field in _REQUIRED[etype]:
        if event.get(field) is None:
            raise InvalidEvent(f"event field {field!r} is required for a {etype} event")
    try:
        params = encode_params(event.get("params"))
    except TypeError as exc:
        raise InvalidEvent(f"event field 'params': {exc}") from None
    ts = event.get("ts")
    return (
        now_us if ts is None else to_micros(ts),
        etype,
        search_id,
        trial_id,
        _opt_int(event, "trial_number", INT32),
        _opt_int(event, "step", INT64),
        _opt_float(event, "resource"),
        _opt_float(event, "value"),
        _opt_str(event, "metric"),
        _opt_str(event, "split"),
        _opt_int(event, "fold", INT16),
        params,
        encode_payload(event.get("payload")),
    )


def is_finite_number(v: object) -> TypeGuard[numbers.Real]:
    """A real number (not a bool) that is finite as a float64."""
    if type(v) is float:
        return math.isfinite(v)
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int beyond float64
        return False
