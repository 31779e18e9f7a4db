"""What a module imports and exports, and what of that breaks ABI v1.

Read two ways: from a compiled `wasmtime.Module`, and straight from the module's bytes,
before anything is compiled. Compiling is the costly part of registration (a hostile
60 MiB module kept a core busy for 73 s), so a module that does not even speak the ABI is
refused from its import and export sections in milliseconds. The byte reader walks only
the type, import, function and export sections and skips the rest by their sizes; where
it meets an encoding it does not know (a newer proposal's types), it says so and the
module is checked after compiling instead. Both views give the same answers
(`tests/test_module_interface.py` compares them on every module the suite builds).
"""

from __future__ import annotations

from dataclasses import dataclass

import wasmtime

from . import abi

FUNC = "func"
MEMORY = "memory"
_KINDS = {0: FUNC, 1: "table", 2: MEMORY, 3: "global", 4: "tag"}
_VALTYPES = {0x7F: abi.ValKind.I32, 0x7E: abi.ValKind.I64}
_OTHER_VALTYPES = {0x7D, 0x7C, 0x7B, 0x70, 0x6F}  # f32 f64 v128 funcref externref
_WASM_HEADER = b"\0asm\x01\0\0\0"


@dataclass(frozen=True, slots=True)
class Extern:
    """One import or export: its kind, and for a function its signature (None when it
    uses types outside the ABI's i32/i64)."""

    kind: str
    signature: abi.Signature | None = None


@dataclass(frozen=True, slots=True)
class Interface:
    imports: list[tuple[str, str, Extern]]
    """(module, name, what) of every import, in order."""

    exports: dict[str, Extern]


def interface_problems(interface: Interface) -> list[str]:
    """Everything about a module's imports and exports that breaks ABI v1."""
    problems = []
    for module, name, item in interface.imports:
        expected = abi.IMPORTS.get(name) if module == abi.IMPORT_MODULE else None
        if expected is None:
            problems.append(f"imports {module}.{name}, which the host does not "
                            f"provide (only {abi.IMPORT_MODULE}.* imports of ABI "
                            f"v{abi.ABI_VERSION}; no WASI)")
        elif item.kind != FUNC or item.signature != expected:
            problems.append(f"imports {module}.{name} with the wrong type")
    exports = interface.exports
    if getattr(exports.get(abi.EXPORT_MEMORY), "kind", None) != MEMORY:
        problems.append("does not export its linear memory as `memory`")
    for name, signature in abi.EXPORTS.items():
        found = exports.get(name)
        if found is None:
            problems.append(f"does not export `{name}`")
        elif found.kind != FUNC or found.signature != signature:
            problems.append(f"exports `{name}` with the wrong signature")
    for name, signature in abi.OPTIONAL_EXPORTS.items():
        found = exports.get(name)
        if found is not None and (found.kind != FUNC or found.signature != signature):
            problems.append(f"exports `{name}` with the wrong signature")
    return problems


# -- from a compiled module ------------------------------------------------------------

def _signature_of(func_type: wasmtime.FuncType) -> abi.Signature | None:
    try:
        return abi.Signature(tuple(abi.ValKind(str(p)) for p in func_type.params),
                             tuple(abi.ValKind(str(r)) for r in func_type.results))
    except ValueError:
        return None


def _extern(kind: object) -> Extern:
    if isinstance(kind, wasmtime.FuncType):
        return Extern(FUNC, _signature_of(kind))
    if isinstance(kind, wasmtime.MemoryType):
        return Extern(MEMORY)
    if isinstance(kind, wasmtime.TableType):
        return Extern("table")
    if isinstance(kind, wasmtime.GlobalType):
        return Extern("global")
    return Extern(type(kind).__name__)


def interface_of(module: wasmtime.Module) -> Interface:
    return Interface([(item.module, item.name or "", _extern(item.type))
                      for item in module.imports],
                     {item.name: _extern(item.type) for item in module.exports})


# -- from the bytes, before compiling ----------------------------------------------------

class _Unknown(Exception):
    """An encoding this reader does not know: leave the module to the compiler."""


class _Reader:
    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self.data = data
        self.at = start
        self.end = len(data) if end is None else end

    def byte(self) -> int:
        if self.at >= self.end:
            raise _Unknown("truncated")
        value = self.data[self.at]
        self.at += 1
        return value

    def u32(self) -> int:
        result, shift = 0, 0
        while True:
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 35:
                raise _Unknown("LEB128 too long")

    def name(self) -> str:
        length = self.u32()
        if self.at + length > self.end:
            raise _Unknown("truncated name")
        raw = self.data[self.at:self.at + length]
        self.at += length
        return raw.decode("utf-8", "replace")

    def valtype(self) -> abi.ValKind | None:
        code = self.byte()
        if code in _VALTYPES:
            return _VALTYPES[code]
        if code in _OTHER_VALTYPES:
            return None
        raise _Unknown(f"value type 0x{code:02x}")

    def limits(self) -> None:
        flags = self.byte()
        if flags > 0x07:
            raise _Unknown(f"limits flags 0x{flags:02x}")
        self.u32()
        if flags & 0x01:
            self.u32()


def _functype(reader: _Reader) -> abi.Signature | None:
    if reader.byte() != 0x60:
        raise _Unknown("a type that is not a plain function type")
    params = [reader.valtype() for _ in range(reader.u32())]
    results = [reader.valtype() for _ in range(reader.u32())]
    if None in params or None in results:
        return None
    return abi.Signature(tuple(p for p in params if p is not None),
                         tuple(r for r in results if r is not None))


def read_interface(wasm: bytes) -> Interface | None:
    """The module's imports and exports from its bytes alone; None where this reader
    cannot tell (then compiling decides)."""
    if not wasm.startswith(_WASM_HEADER):
        return None
    try:
        return _read(wasm)
    except (_Unknown, IndexError):
        return None


def _read(wasm: bytes) -> Interface:
    types: list[abi.Signature | None] = []
    functions: list[abi.Signature | None] = []  # the function index space
    imports: list[tuple[str, str, Extern]] = []
    exports: dict[str, Extern] = {}
    reader = _Reader(wasm, len(_WASM_HEADER))
    while reader.at < reader.end:
        section, size = reader.byte(), reader.u32()
        body = _Reader(wasm, reader.at, reader.at + size)
        if body.end > len(wasm):
            raise _Unknown("section past the end")
        reader.at = body.end
        if section == 1:
            types = [_functype(body) for _ in range(body.u32())]
        elif section == 2:
            for _ in range(body.u32()):
                module, name, kind = body.name(), body.name(), body.byte()
                imports.append((module, name, _import(body, kind, types, functions)))
        elif section == 3:
            functions += [_type_at(types, body.u32()) for _ in range(body.u32())]
        elif section == 7:
            for _ in range(body.u32()):
                name, kind, index = body.name(), body.byte(), body.u32()
                if kind not in _KINDS:
                    raise _Unknown(f"export kind {kind}")
                signature = None
                if kind == 0:
                    if index >= len(functions):
                        raise _Unknown("export of a function that does not exist")
                    signature = functions[index]
                exports[name] = Extern(_KINDS[kind], signature)
    return Interface(imports, exports)


def _type_at(types: list[abi.Signature | None], index: int) -> abi.Signature | None:
    if index >= len(types):
        raise _Unknown("a type index past the type section")
    return types[index]


def _import(body: _Reader, kind: int, types: list[abi.Signature | None],
            functions: list[abi.Signature | None]) -> Extern:
    if kind == 0:
        signature = _type_at(types, body.u32())
        functions.append(signature)
        return Extern(FUNC, signature)
    if kind == 1:  # a table: its element type, then limits
        if body.byte() not in (0x70, 0x6F):
            raise _Unknown("a table of another reference type")
        body.limits()
    elif kind == 2:
        body.limits()
    elif kind == 3:
        body.valtype()
        body.byte()  # mutability
    else:
        raise _Unknown(f"import kind {kind}")
    return Extern(_KINDS[kind])
