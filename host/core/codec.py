"""msgpack at the host's edges: strict decoding, size limits, JSON-safe views."""

from __future__ import annotations

import base64
from typing import Any

import msgpack  # type: ignore[import-untyped]  # ships no type information


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
    """Decode exactly one msgpack value; anything else is a CodecError."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            ValueError, TypeError) as exc:
        raise CodecError(f"not a single well-formed msgpack value ({exc})") from None


def unpack_each(data: bytes) -> list[tuple[Any, bytes]]:
    """Decode msgpack values written back to back (no array around them), each with the
    bytes that encoded it: a journal keeps a step result exactly as the guest wrote it."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False,
                                max_buffer_size=max(1, len(data)))
    values: list[tuple[Any, bytes]] = []
    start = 0
    try:
        unpacker.feed(data)
        for value in unpacker:
            end = unpacker.tell()
            values.append((value, data[start:end]))
            start = end
    except (msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as exc:
        raise CodecError(f"not well-formed msgpack ({exc or type(exc).__name__})") from None
    if start != len(data):
        raise CodecError(f"msgpack ends mid-value (at byte {start} of {len(data)})")
    return values


def to_jsonable(value: Any) -> Any:
    """A view of a decoded payload that `json.dumps` accepts (bytes become base64)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return {"$base64": base64.b64encode(value).decode()}
    return value


def body_bytes(value: Any) -> bytes | None:
    """An HTTP body a guest gave as bin, str (sent as UTF-8) or nil; None for anything else."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    return b"" if value is None else None
