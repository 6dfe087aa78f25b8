"""`device=` of every command resolves in one place (`ucdir.device.resolve_device`)."""

import pytest
import torch

from ucdir.device import resolve_device


def test_auto_names_and_bad_names() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"device='gpu0' is not a device"):
        resolve_device("gpu0")
