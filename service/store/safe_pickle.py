"""Reading ``model.joblib`` without running code: an unpickler that admits only plain data.

A pickle is a program: its GLOBAL and REDUCE opcodes import and call anything, so whoever can
write the store could otherwise run code in every worker that loads a version (joblib#977), and
a sha256 beside the file is rewritten by the same writer. :func:`loads` reads the files that
``joblib.dump`` writes (a pickle in which each numpy array is a ``NumpyArrayWrapper`` header
followed by the array's raw bytes) with an unpickler whose ``find_class`` knows only:

- joblib's array header, which is replaced by a plain stand-in: no joblib code runs, and the
  array's bytes are read here with ``numpy.frombuffer``;
- ``numpy.dtype``, ``numpy.ndarray`` with numpy's ``_reconstruct`` and ``scalar`` (arrays and
  scalars pickled the ordinary way);

and every dtype must be a plain one: booleans, integers, floats, complex numbers or unicode
strings, never ``object`` (whose items joblib would read with an unrestricted ``pickle.load``),
never structured. Everything else (``os.system``, ``builtins.eval``, any class) is refused
before it is imported. The result is then walked whole: only dicts, lists, tuples, str, int,
float, bool, None and those arrays and scalars may appear, at any depth, so the model state may
grow (a feature schema with level lists and per-feature dicts) without this module changing.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

__all__ = ["UnsafePickleError", "loads"]

# Kinds of numpy dtypes a model file may hold: bool, signed and unsigned integers, floats,
# complex, unicode. Never "O" (object), "V" (void/structured), "M"/"m" (datetimes), "S" (bytes).
PLAIN_KINDS = frozenset("biufcU")
_MAX_DEPTH = 1000  # nesting deeper than this is refused, not walked


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names something other than plain data, or its arrays are malformed."""


def _plain_dtype(dtype: Any) -> np.dtype:
    if not isinstance(dtype, np.dtype):
        raise UnsafePickleError(f"expected a numpy dtype, got {type(dtype).__name__}")
    if dtype.kind not in PLAIN_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise UnsafePickleError(f"numpy dtype {dtype.str!r} is not allowed (only plain "
                                "numbers, booleans and unicode strings)")
    return dtype


class _ArrayHeader:
    """Stands in for joblib's ``NumpyArrayWrapper``: its attributes only, none of its code."""


def _dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    if not isinstance(spec, str):
        raise UnsafePickleError(f"numpy dtype spec must be a string, got {type(spec).__name__}")
    try:
        # copy=True as numpy pickles it: the state that follows is set on a fresh dtype, never
        # on numpy's shared instance of that type.
        dtype = np.dtype(spec, align=bool(align), copy=True)
    except TypeError as exc:
        raise UnsafePickleError(f"bad numpy dtype {spec[:40]!r}: {exc}") from None
    return _plain_dtype(dtype)


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    if cls is not np.ndarray:
        raise UnsafePickleError("only numpy.ndarray may be reconstructed")
    return np.ndarray.__new__(np.ndarray, (0,), "b")


def _scalar(dtype: Any, data: Any = None) -> Any:
    dtype = _plain_dtype(dtype)
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise UnsafePickleError("a numpy scalar must be its dtype's bytes")
    return np.frombuffer(data, dtype=dtype)[0]


# (module, name) -> what it becomes. Both spellings of numpy's core module (numpy 1 and 2).
_ALLOWED: dict[tuple[str, str], Any] = {
    ("joblib.numpy_pickle", "NumpyArrayWrapper"): _ArrayHeader,
    ("numpy", "dtype"): _dtype,
    ("numpy", "ndarray"): np.ndarray,
}
for _core in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_core, "_reconstruct")] = _reconstruct
    _ALLOWED[(_core, "scalar")] = _scalar


class _Unpickler(pickle._Unpickler):  # the Python implementation: its dispatch can be extended
    dispatch = pickle._Unpickler.dispatch.copy()

    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)
        self._size = len(data)
        super().__init__(self._file)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load {module[:60]}.{name[:60]}: a model file holds plain data only"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("persistent ids are not allowed in a model file")

    def load_build(self) -> None:
        target = self.stack[-2] if len(self.stack) >= 2 else None
        if isinstance(target, (np.ndarray, np.dtype)):
            # numpy's own __setstate__ takes a tuple of plain values; check what it built.
            pickle._Unpickler.load_build(self)
            built = self.stack[-1]
            _plain_dtype(built.dtype if isinstance(built, np.ndarray) else built)
            return
        if not isinstance(target, _ArrayHeader):
            raise UnsafePickleError(f"refused to set the state of a {type(target).__name__}")
        state = self.stack.pop()
        if not isinstance(state, dict):
            raise UnsafePickleError("a numpy array header must hold a dict")
        self.stack.pop()
        self.stack.append(self._read_array(state))

    dispatch[pickle.BUILD[0]] = load_build

    def _read_array(self, header: dict[str, Any]) -> np.ndarray:
        """The array joblib wrote after its header: [padding length, padding,] raw bytes."""
        if header.get("subclass") is not np.ndarray:
            raise UnsafePickleError("only plain numpy arrays are allowed")
        dtype = _plain_dtype(header.get("dtype"))
        shape = header.get("shape")
        if not isinstance(shape, tuple) or not all(
                type(n) is int and n >= 0 for n in shape):
            raise UnsafePickleError("a numpy array's shape must be a tuple of sizes")
        order = header.get("order", "C")
        if order not in ("C", "F"):
            raise UnsafePickleError(f"array order must be 'C' or 'F', got {order!r}")
        if header.get("numpy_array_alignment_bytes") is not None:
            padding = self._file.read(1)
            if padding:
                self._file.read(padding[0])
        count = 1
        for n in shape:
            count *= n
        nbytes = count * dtype.itemsize
        # Refuse before allocating: the header cannot claim more bytes than the file holds.
        if nbytes > self._size - self._file.tell():
            raise UnsafePickleError("a numpy array is longer than the file (truncated)")
        array = np.frombuffer(self._file.read(nbytes), dtype=dtype, count=count).copy()
        if order == "F":
            array = array.reshape(shape[::-1]).transpose()
        else:
            array = array.reshape(shape)
        if dtype.byteorder not in ("=", "|"):
            array = array.astype(dtype.newbyteorder("="))
        return array


def loads(data: bytes) -> Any:
    """The plain data in a model file written by ``joblib.dump``; refuses anything else with
    :class:`UnsafePickleError` (or another ``pickle.UnpicklingError``) before running it."""
    value = _Unpickler(data).load()
    check_plain(value)
    return value


def check_plain(value: Any) -> None:
    """Refuse a value unless it is plain data all the way down (iteratively: no recursion)."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > _MAX_DEPTH:
            raise UnsafePickleError(f"model state nests deeper than {_MAX_DEPTH} levels")
        kind = type(item)
        if item is None or kind in (str, int, float, bool):
            continue
        if kind is dict:
            for key, child in item.items():
                pending.append((key, depth + 1))
                pending.append((child, depth + 1))
        elif kind in (list, tuple):
            pending.extend((child, depth + 1) for child in item)
        elif kind is np.ndarray or isinstance(item, np.generic):
            _plain_dtype(item.dtype)
        else:
            raise UnsafePickleError(f"a model file may not hold a {kind.__name__}")
