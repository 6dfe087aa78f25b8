"""Reads pickles of numpy arrays (in nested dicts) and nothing else: nothing in the file runs.

A pickle is a program: every global it names is imported and may be called. This unpickler
resolves exactly the globals numpy's own array pickling emits (`ndarray.__reduce__`):
`numpy.core.multiarray._reconstruct` (numpy 1 name) or `numpy._core.multiarray._reconstruct`
(numpy 2 name), `numpy.ndarray` and `numpy.dtype`, and even those only through guards that
accept the arguments numpy itself writes (an empty plain `ndarray`, a numeric dtype). Any other
global (`os.system`, `builtins.eval`, `numpy.testing...`) raises `UnsafePickleError` before
anything is called; persistent ids are refused too. Arrays get their shape and bytes from the
pickle's own data, so their size is bounded by the file's.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

# numpy's reconstruction function of the running numpy, whichever module it lives in: pickles
# written under numpy 1 name `numpy.core.multiarray`, under numpy 2 `numpy._core.multiarray`.
_RECONSTRUCT = np.ndarray.__reduce__(np.empty(0))[0]
_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float: no objects, no structured records


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global (or argument) outside the numpy-array allow-list."""


def _reconstruct(subtype: object, shape: object, dtype_code: object) -> np.ndarray:
    # numpy writes `_reconstruct(ndarray, (0,), b"b")` and fills the array in `__setstate__`.
    if subtype is not np.ndarray or shape != (0,) or dtype_code != b"b":
        raise UnsafePickleError(
            f"unexpected array reconstruction arguments {subtype!r}, {shape!r}, {dtype_code!r}"
        )
    return np.ndarray.__new__(np.ndarray, (0,), "b")


def _dtype(code: object, align: object = False, copy: object = True) -> np.dtype:
    if not isinstance(code, str) or not isinstance(align, bool) or not isinstance(copy, bool):
        raise UnsafePickleError(f"unexpected dtype arguments {code!r}, {align!r}, {copy!r}")
    try:
        # always a copy, as numpy's own pickles ask: BUILD then sets its state, never on the
        # shared builtin instance
        dtype = np.dtype(code, align=align, copy=True)
    except TypeError as err:
        raise UnsafePickleError(f"unknown dtype {code!r}") from err
    if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None:
        raise UnsafePickleError(f"only numeric dtypes are admitted, got {code!r}")
    return dtype


_ALLOWED: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that admits numpy arrays and nothing else (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        """The guarded object for an allowed `module.name`; `UnsafePickleError` otherwise."""
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused global {module}.{name}: only numpy arrays may be unpickled"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        """Persistent ids are refused (numpy array pickles never use them)."""
        raise UnsafePickleError(f"refused persistent id {pid!r}")


def _check_tree(tree: object, where: str) -> None:
    if isinstance(tree, np.ndarray):
        if type(tree) is not np.ndarray or tree.dtype.kind not in _NUMERIC_KINDS:
            raise UnsafePickleError(f"{where}: not a numeric numpy array")
        return
    if not isinstance(tree, dict):
        raise UnsafePickleError(f"{where}: expected a dict or an array, got {type(tree).__name__}")
    for key, value in tree.items():
        if not isinstance(key, str):
            raise UnsafePickleError(f"{where}: non-string key {key!r}")
        _check_tree(value, f"{where}/{key}")


def load_numpy_tree(data: bytes) -> dict[str, Any]:
    """Unpickles `data`, which must hold nested dicts (string keys) of numeric numpy arrays.

    Raises:
        UnsafePickleError: a global other than numpy's array reconstruction, or a leaf that is
            not a numeric array. Nothing named in the pickle is executed.
        pickle.UnpicklingError: the data is not a valid pickle.
    """
    try:
        tree = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except (EOFError, ValueError, TypeError, IndexError) as err:  # malformed streams
        raise pickle.UnpicklingError(f"not a valid pickle: {err}") from err
    if not isinstance(tree, dict):
        raise UnsafePickleError(f"expected a dict at the top, got {type(tree).__name__}")
    _check_tree(tree, "")
    return tree
