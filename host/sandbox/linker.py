"""The host imports, bound once per wasmtime engine, and the fast path across the boundary.

Why not wasmtime-py's `Linker.define_func` per invocation, as before:
- a new Linker with eleven Python functions cost ~230 µs per invocation, four times the
  cost of instantiating the module; one Linker per engine is shared by every invocation,
  and an import finds the invocation it serves through a thread-local (a guest runs on the
  thread that called into it, and a thread runs one invocation at a time);
- its checked calling convention converts every argument through `Val` objects: calling
  `dwf_alloc` from the host cost ~18 µs, which dominated replaying a cached step. Imports
  and calls here use wasmtime's unchecked convention (raw i32/i64 slots); the ABI's
  signatures are checked once per compiled module instead (`check_exports`);
- its trampoline keeps the exception an import raised in a module-global
  (`LAST_EXCEPTION`), which an invocation on another thread can pick up as its own. Here an
  import's exception stays on its invocation (`pending`), the import returns a trap, and
  `call` re-raises the original once the guest call has unwound.

Guest memory is read and written through the raw data pointer of the caller's context,
after bounds checks done by the caller (`guest._Invocation`).
"""

from __future__ import annotations

import ctypes
import struct
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, Protocol

import wasmtime
from wasmtime import _bindings  # its ctypes prototypes, some rebound below
from wasmtime import _ffi as ffi  # the C API, for the unchecked calling convention

from . import abi

Context = int
"""The address of a `wasmtime_context_t`: the store an import or call runs in."""


class Invocation(Protocol):
    """What an import needs from the invocation it serves (see `guest._Invocation`)."""

    pending: BaseException | None
    """The exception an import raised, re-raised by `call` after the guest unwound."""

    context_address: int
    """Address of the invocation's store context: an import checks its caller against it."""

    barred: str | None
    """Why no import may be called now (the guest is in its start function, or in the
    allocator the host called from an import), or None."""

    def refuse(self, name: str) -> NoReturn:
        """Raise the error for an import this invocation does not serve, or not now."""


_current = threading.local()
_linkers: weakref.WeakKeyDictionary[wasmtime.Engine, wasmtime.Linker] = (
    weakref.WeakKeyDictionary())
_linkers_lock = threading.Lock()
_checked: weakref.WeakKeyDictionary[wasmtime.Module, list[str]] = weakref.WeakKeyDictionary()

# Our own prototypes of the few C functions on the hot path: pointers travel as plain ints
# (c_void_p), which saves a ctypes cast or a pointer object per use. The quick accessors
# are PYFUNCTYPE: called without releasing the GIL. A ctypes call that releases it must
# win it back afterwards, and with several invocations running that is a thread switch
# each time. Calls into guest code (func_call_unchecked) release it, always: a guest may
# run for its whole time budget, and the epoch ticker that interrupts it needs the GIL.
_P, _SIZE = ctypes.c_void_p, ctypes.c_size_t
_callback_t = ctypes.CFUNCTYPE(_SIZE, _P, _P, _P, _SIZE)  # wasmtime_func_unchecked_callback_t
_finalizer_t = ctypes.CFUNCTYPE(None, _P)
_define_func_unchecked = ctypes.CFUNCTYPE(_P, _P, _P, _SIZE, _P, _SIZE, _P, _callback_t, _P,
                                          _finalizer_t)(
    ("wasmtime_linker_define_func_unchecked", ffi.dll))
_caller_context = ctypes.PYFUNCTYPE(_P, _P)(("wasmtime_caller_context", ffi.dll))
_memory_data = ctypes.PYFUNCTYPE(_P, _P, _P)(("wasmtime_memory_data", ffi.dll))
_memory_data_size = ctypes.PYFUNCTYPE(_SIZE, _P, _P)(("wasmtime_memory_data_size", ffi.dll))
_func_call_unchecked = ctypes.CFUNCTYPE(_P, _P, _P, _P, _SIZE, _P)(
    ("wasmtime_func_call_unchecked", ffi.dll))
_trap_new = ctypes.PYFUNCTYPE(_P, ctypes.c_char_p, _SIZE)(("wasmtime_trap_new", ffi.dll))
_memmove = ctypes.PYFUNCTYPE(_P, _P, _P, _SIZE)(ctypes._memmove_addr)  # type: ignore[attr-defined]
_export_get = ctypes.PYFUNCTYPE(ctypes.c_bool, _P, _P, ctypes.c_char_p, _SIZE, _P)(
    ("wasmtime_instance_export_get", ffi.dll))
_set_epoch_deadline = ctypes.PYFUNCTYPE(None, _P, ctypes.c_uint64)(
    ("wasmtime_context_set_epoch_deadline", ffi.dll))


def _keep_gil(name: str) -> None:
    """Rebind one of wasmtime-py's own C calls as PYFUNCTYPE, with the same prototype.

    For the quick store calls every invocation makes (new, context, limits, fuel set and
    read, delete):
    none runs guest code, and each release of the GIL is a thread switch when guests,
    the writer and the event loop are all busy (measured: 6 of 42 per workflow).
    """
    released = getattr(_bindings, f"_{name}")
    setattr(_bindings, f"_{name}", ctypes.PYFUNCTYPE(released.restype, *released.argtypes)(
        (name, ffi.dll)))


for _name in ("wasmtime_store_new", "wasmtime_store_context", "wasmtime_store_limiter",
              "wasmtime_context_set_fuel", "wasmtime_context_get_fuel", "wasmtime_store_delete"):
    _keep_gil(_name)


def set_epoch_deadline(context: Context, ticks: int) -> None:
    """`Store.set_epoch_deadline` without releasing the GIL (it is called twice a step)."""
    _set_epoch_deadline(context, ticks)
_RAW = ctypes.sizeof(ffi.wasmtime_val_raw_t)  # one argument/result slot


def _slots_format(params: tuple[abi.ValKind, ...]) -> struct.Struct:
    """How to read an import's arguments out of its raw slots in one unpack."""
    return struct.Struct("<" + "".join(
        ("i" if kind is abi.I32 else "q") + f"{_RAW - (4 if kind is abi.I32 else 8)}x"
        for kind in params))


_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_IMPORTS: list[tuple[str, str, struct.Struct, int, struct.Struct | None]] = [
    (name, f"_import_{name}", _slots_format(signature.params), _RAW * len(signature.params),
     (_I32 if signature.results[0] is abi.I32 else _I64) if signature.results else None)
    for name, signature in abi.IMPORTS.items()]


def _new_trap(message: bytes) -> int:
    return int(_trap_new(message, len(message)) or 0)


def context_address(context: Any) -> int:
    """The address of a store context (`Store._context()`), as imports see it."""
    address: int = ctypes.cast(context, ctypes.c_void_p).value or 0
    return address


@_callback_t  # type: ignore[untyped-decorator]
def _trampoline(env: int | None, caller: int, values: int, _count: int) -> int:
    """Every import lands here; `env` is its index in `_IMPORTS`."""
    invocation: Any = getattr(_current, "invocation", None)
    if invocation is None:
        return _new_trap(b"dwf import called outside of an invocation")
    try:
        name, method, slots, size, result_format = _IMPORTS[env or 0]
        context = _caller_context(caller)
        if context != invocation.context_address:
            # Never answer a store with another invocation's state.
            raise RuntimeError("dwf import called from a store that is not its invocation's")
        handler: Any = getattr(invocation, method, None)
        if handler is None or invocation.barred is not None:  # e.g. a fetch import called
            invocation.refuse(name)                             # from a workflow
        result = handler(context, *slots.unpack(ctypes.string_at(values, size)))
        if result_format is not None:
            packed = result_format.pack(result)
            _memmove(values, packed, len(packed))
        return 0
    except BaseException as exc:  # noqa: B036 - kept on the invocation, re-raised by `call`
        invocation.pending = exc
        return _new_trap(b"host import failed")


def linker_for(engine: wasmtime.Engine) -> wasmtime.Linker:
    """The engine's one Linker defining every `dwf.*` import (made on first use)."""
    with _linkers_lock:
        linker = _linkers.get(engine)
        if linker is None:
            linker = wasmtime.Linker(engine)
            module = abi.IMPORT_MODULE.encode()
            for index, (name, signature) in enumerate(abi.IMPORTS.items()):
                functype = wasmtime.FuncType(
                    [_valtype(kind) for kind in signature.params],
                    [_valtype(kind) for kind in signature.results])
                error = _define_func_unchecked(
                    _address(linker.ptr()), module, len(module), name.encode(),
                    len(name.encode()), _address(functype.ptr()), _trampoline, index,
                    _finalizer_t())
                if error:
                    raise wasmtime.WasmtimeError._from_ptr(
                        ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t)))
            _linkers[engine] = linker
        return linker


def _address(pointer: Any) -> int:
    address: int = ctypes.cast(pointer, ctypes.c_void_p).value or 0
    return address


def _valtype(kind: abi.ValKind) -> wasmtime.ValType:
    return wasmtime.ValType.i32() if kind is abi.I32 else wasmtime.ValType.i64()


def checked_exports(module: wasmtime.Module, problems: Any) -> list[str]:
    """`problems(module)`, computed once per compiled module.

    The unchecked calls below trust the ABI's export signatures; a module that breaks them
    must never be called that way.
    """
    found = _checked.get(module)
    if found is None:
        found = list(problems(module))
        _checked[module] = found
    return found


@contextmanager
def serving(invocation: Invocation) -> Iterator[None]:
    """Route this thread's imports to `invocation` while it runs."""
    previous = getattr(_current, "invocation", None)
    _current.invocation = invocation
    try:
        yield
    finally:
        _current.invocation = previous


def export(context: Context, instance: wasmtime.Instance, name: str) -> Any:
    """One export of an instance (a `wasmtime_extern_t`), looked up by name.

    `Instance.exports` wraps every export in Python objects (~30 us per instantiation);
    an invocation needs six, by name, as raw C structs.
    """
    item = ffi.wasmtime_extern_t()
    encoded = name.encode()
    if not _export_get(context, ctypes.addressof(instance._instance), encoded, len(encoded),
                       ctypes.addressof(item)):
        raise KeyError(f"the module does not export {name!r}")
    return item


class GuestFunc:
    """An export called with the unchecked convention: i32 arguments, at most one result."""

    __slots__ = ("_keep", "_func", "_values", "_address", "_count", "_has_result", "_trap")

    def __init__(self, extern: Any, nargs: int, has_result: bool) -> None:
        if extern.kind != ffi.WASMTIME_EXTERN_FUNC.value:
            raise TypeError("export is not a function")
        self._keep = extern
        self._func = ctypes.addressof(extern.of.func)
        self._count = max(1, nargs, int(has_result))
        self._values = (ffi.wasmtime_val_raw_t * self._count)()
        self._address = ctypes.addressof(self._values)
        self._has_result = has_result
        self._trap = ctypes.c_void_p()

    def __call__(self, invocation: Invocation, context: int, *args: int) -> int | None:
        for index, arg in enumerate(args):
            _memmove(self._address + index * _RAW, _I32.pack(arg), 4)
        trap = self._trap
        trap.value = None
        error = _func_call_unchecked(context, self._func, self._address, self._count,
                                     ctypes.addressof(trap))
        pending, invocation.pending = invocation.pending, None
        if pending is not None:
            # The import's own exception is the answer: free the failure wasmtime made of
            # its trap. wasmtime 50 reports a trap raised by an import in `error` (`trap`
            # stays NULL); each one left behind leaked ~1.8 KB of native memory per pause.
            if error:
                ffi.wasmtime_error_delete(ctypes.cast(error,
                                                      ctypes.POINTER(ffi.wasmtime_error_t)))
            if trap.value:
                ffi.wasm_trap_delete(ctypes.cast(trap.value, ctypes.POINTER(ffi.wasm_trap_t)))
            raise pending
        if error:
            raise wasmtime.WasmtimeError._from_ptr(
                ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t)))
        if trap.value:
            raise wasmtime.Trap._from_ptr(ctypes.cast(trap.value,
                                                      ctypes.POINTER(ffi.wasm_trap_t)))
        return int(self._values[0].i32) if self._has_result else None


class GuestMemory:
    """Raw access to an instance's linear memory; callers check bounds first."""

    __slots__ = ("_keep", "_memory")

    def __init__(self, extern: Any) -> None:
        if extern.kind != ffi.WASMTIME_EXTERN_MEMORY.value:
            raise TypeError("export is not a memory")
        self._keep = extern
        self._memory = ctypes.addressof(extern.of.memory)

    def size(self, context: int) -> int:
        size: int = _memory_data_size(context, self._memory)
        return size

    def read(self, context: int, ptr: int, length: int) -> bytes:
        return ctypes.string_at(_memory_data(context, self._memory) + ptr, length)

    def write(self, context: int, ptr: int, data: bytes) -> None:
        _memmove(_memory_data(context, self._memory) + ptr, data, len(data))
