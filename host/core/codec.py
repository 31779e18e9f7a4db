"""msgpack at the host's edges: strict decoding, size limits, JSON-safe views.

Values the host stores (params, event payloads, outputs, step results) follow one set of
rules wherever they come from (a guest's msgpack, an API or CLI JSON body), so every
reader can show them: at most `MAX_DEPTH` levels of arrays and maps, integers that fit
64 bits, text that is valid Unicode, no msgpack extension types (a Timestamp included).
Entry points check them (`check`, `unpack_checked`, `pack_checked`); readers that show
stored values to people use `stored_value`, which names the fault of anything a database
already holds that breaks them, and `to_jsonable`, which renders the rest as strict JSON.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any, NoReturn

import msgpack  # type: ignore[import-untyped]  # ships no type information

MAX_DEPTH = 128
"""Levels of arrays and maps a stored value may nest (`[[1]]` is 2): enough for any
document a workflow passes around, far below what would exhaust a reader's stack."""

_INT_MIN, _INT_MAX = -(2 ** 63), 2 ** 64 - 1  # msgpack's integers
_SCALARS = frozenset({type(None), bool, int, float, str, bytes})


class CodecError(ValueError):
    pass


def pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def array_header(count: int) -> bytes:
    """The msgpack header of an array of `count` values (written after it, already packed)."""
    header: bytes = msgpack.Packer().pack_array_header(count)
    return header


def map_with_raw(fields: dict[str, Any], raw: dict[str, bytes]) -> bytes:
    """A msgpack map of `fields` (packed here) and `raw` (values already packed)."""
    packer = msgpack.Packer(use_bin_type=True)
    parts = [packer.pack_map_header(len(fields) + len(raw))]
    parts += [packer.pack(key) + packer.pack(value) for key, value in fields.items()]
    parts += [packer.pack(key) + value for key, value in raw.items()]
    return b"".join(parts)


def unpack(data: bytes) -> Any:
    """Decode exactly one msgpack value; anything else is a CodecError. For bytes the host
    wrote or checked itself; a guest's go through `unpack_checked`."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            ValueError, TypeError) as exc:
        raise CodecError(f"not a single well-formed msgpack value ({exc})") from None


def _refuse_ext(code: int, data: bytes) -> NoReturn:
    raise CodecError(f"holds a msgpack extension value (type {code}); payloads are plain "
                     "msgpack: nil, bool, int, float, str, bin, array, map")


def unpack_checked(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Decode exactly one msgpack value that follows the rules for stored values."""
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_refuse_ext)
    except CodecError:
        raise
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            ValueError, TypeError) as exc:
        raise CodecError(f"is not valid msgpack: not a single well-formed msgpack value "
                         f"({exc or type(exc).__name__})") from None
    check(value, max_depth, encoded=data)
    return value


def unpack_each(data: bytes) -> list[tuple[Any, bytes]]:
    """Decode msgpack values written back to back (no array around them), each with the
    bytes that encoded it: a journal keeps a step result exactly as the guest wrote it.
    Each must follow the rules for stored values."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False,
                                max_buffer_size=max(1, len(data)), ext_hook=_refuse_ext)
    values: list[tuple[Any, bytes]] = []
    start = 0
    try:
        unpacker.feed(data)
        for value in unpacker:
            end = unpacker.tell()
            encoded = data[start:end]
            if len(encoded) > MAX_DEPTH or b"\xff" in encoded:  # check()'s own shortcut,
                check(value, encoded=encoded)                     # without the call
            values.append((value, encoded))
            start = end
    except CodecError as exc:  # an extension type, or a value check() refused
        raise CodecError(f"hold a value that {exc}") from None
    except (msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as exc:
        raise CodecError(f"are not valid msgpack: not well-formed msgpack "
                         f"({exc or type(exc).__name__})") from None
    if start != len(data):
        raise CodecError(f"are not valid msgpack: msgpack ends mid-value (at byte {start} "
                         f"of {len(data)})")
    return values


def check(value: Any, max_depth: int = MAX_DEPTH, *, encoded: bytes | None = None) -> None:
    """CodecError unless `value` follows the rules for stored values (see the top).

    `encoded`: the msgpack that `value` was decoded from. Each level of nesting takes a
    byte, so a value shorter than `max_depth` bytes with no Timestamp in it is not walked:
    the hot path (small step results) costs a substring search. (msgpack decodes a
    Timestamp, extension -1, before any ext_hook sees it: fixext 4, fixext 8 or ext 8 of
    12 bytes, each with the type byte 0xff.)
    """
    if encoded is not None and len(encoded) <= max_depth and (
            b"\xff" not in encoded or not _may_hold_timestamp(encoded)):
        return
    level, depth = [value], 0
    while level:
        below: list[Any] = []
        containers = False
        for item in level:
            kind = type(item)
            if kind is dict:
                containers = True
                below.extend(item.keys())
                below.extend(item.values())
            elif kind is list or kind is tuple:
                containers = True
                below.extend(item)
            elif kind is str:
                if not item.isascii():
                    _check_text(item)
            elif kind is int:
                if not _INT_MIN <= item <= _INT_MAX:
                    raise CodecError(f"holds the integer {_short_int(item)}, outside the "
                                     "64-bit range (-2**63 to 2**64-1) msgpack can carry")
            elif kind not in _SCALARS:
                name = "a Timestamp" if isinstance(item, msgpack.Timestamp) else (
                    f"a {kind.__name__}")
                raise CodecError(f"holds {name}; payloads are plain msgpack: nil, bool, "
                                 "int, float, str, bin, array, map (no extension types)")
        if containers:
            depth += 1
            if depth > max_depth:
                raise CodecError(f"is nested more than {max_depth} levels of arrays and "
                                 "maps deep; flatten it")
        level = below


def _may_hold_timestamp(encoded: bytes) -> bool:
    return (b"\xd6\xff" in encoded or b"\xd7\xff" in encoded
            or b"\xc7\x0c\xff" in encoded)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise CodecError(f"holds text that is not valid Unicode (a lone surrogate "
                         f"\\u{ord(bad):04x}); text must be UTF-8") from None


def check_text(text: str, what: str) -> None:
    """CodecError naming `what` unless `text` can be stored (valid Unicode)."""
    try:
        _check_text(text)
    except CodecError as exc:
        raise CodecError(f"{what} {exc}") from None


def _short_int(value: int) -> str:
    if value.bit_length() < 128:
        return str(value)
    return f"of {value.bit_length()} bits"


def pack_checked(value: Any, what: str) -> bytes:
    """`value` as msgpack, once it follows the rules for stored values; a CodecError
    naming `what` (e.g. "params") otherwise."""
    try:
        check(value)
    except CodecError as exc:
        raise CodecError(f"{what} {exc}") from None
    return pack(value)


def parse_json(text: str | bytes, what: str) -> Any:
    """JSON text (RFC 8259: NaN and Infinity are not JSON) to a value, or a CodecError
    that says what is wrong with it. The value itself is checked where it is stored."""
    try:
        if isinstance(text, bytes):  # JSON on the wire is UTF-8 (RFC 8259), nothing else
            text = text.decode("utf-8")
        return json.loads(text, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise CodecError(f"{what} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise CodecError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} "
                         f"column {exc.colno}") from None
    except RecursionError:
        raise CodecError(f"{what} is nested too deeply to read: values may nest at most "
                         f"{MAX_DEPTH} levels of arrays and objects") from None
    except ValueError as exc:  # an integer of more digits than Python converts (4300)
        raise CodecError(f"{what} is not valid JSON here: {str(exc).split(':')[0]}; "
                         "integers must fit 64 bits") from None


def _refuse_constant(name: str) -> NoReturn:
    raise json.JSONDecodeError(f"{name} is not JSON (use null or a string)", name, 0)


def stored_value(data: bytes) -> Any:
    """A stored payload decoded for people. One that breaks the rules (stored before the
    host checked them) is not an error for its readers: it is shown as
    `{"$invalid": why}` (the guest still gets its bytes as they are)."""
    try:
        return unpack_checked(data)
    except CodecError as exc:
        return {"$invalid": f"the stored value {exc}"}


_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def to_jsonable(value: Any, *, strict_floats: bool = False) -> Any:
    """A view of a decoded payload that `json.dumps` renders as strict JSON: bytes become
    `{"$base64": str}`, NaN and infinities `{"$float": "NaN"}` (or ValueError with
    `strict_floats`), map keys strings. For checked values (nesting is bounded)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, strict_floats=strict_floats)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, strict_floats=strict_floats) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return {"$base64": base64.b64encode(value).decode()}
    if isinstance(value, float) and not math.isfinite(value):
        if strict_floats:
            raise ValueError(f"{value!r} is not JSON")
        return {"$float": _NON_FINITE.get(value, "NaN")}
    return value


def body_bytes(value: Any) -> bytes | None:
    """An HTTP body a guest gave as bin, str (sent as UTF-8) or nil; None for anything else."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    return b"" if value is None else None
