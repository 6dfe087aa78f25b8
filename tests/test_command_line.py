"""Mistakes on the command line are named: an override Hydra cannot parse gets the quoting that
fixes it, and a wrong optimizer value names its key before training starts."""

import re
from collections.abc import Callable
from typing import Any

import pytest

from ucdir.overrides import OverrideSyntaxError, check_overrides
from ucdir.train import build


def test_unparsable_overrides_get_the_quoting_hint() -> None:
    check_overrides(["-m", "input=my photos/a.png", 'output="out dir"', "sampler.steps=10,50"])
    for argv in (["input=my", "photos/a.png"], ["input=scan (1).png"]):
        with pytest.raises(OverrideSyntaxError, match=re.escape("""'input="my photos/a.png"'""")):
            check_overrides(argv)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.optimizer.lr=abc", r"model\.optimizer\.lr='abc' is not a number"),
        ("model.optimizer.weight_decay=-1", r"model\.optimizer: .*weight_decay=-1"),
    ],
)
def test_a_bad_optimizer_value_names_its_key(
    train_cfg: Callable[..., Any], override: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build(train_cfg(override))
