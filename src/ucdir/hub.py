"""Trained models as artifacts: `UCDIR`, a folder of `model.safetensors` + `config.json` + model
card `README.md`, saved, loaded and pushed by huggingface_hub's `PyTorchModelHubMixin`.

    model = UCDIR.load("outputs/export/jpeg")          # an exported folder
    model = UCDIR.load("user/ucdir-jpeg")              # a hub id (downloaded once, then cached)
    out = model.restore(lq)                            # the model's own default sampler

Loading reads only safetensors (no pickle) and builds only `ucdir.models` classes from the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from hydra.utils import instantiate
from torch import Tensor, nn

from ucdir.checkpoints import check_targets

SHIPPED_DIR = Path(__file__).resolve().parent / "assets" / "models"
"""Models shipped inside the package, one exported folder per name (`pretrained=<name>`)."""

MODEL_CARD = """
---
{{ card_data }}
---

# ucdir model: {{ title }}

A [ucdir](https://arxiv.org/abs/2305.20049) model (UCDIR: a Unified Conditional Framework for
Diffusion-based Image Restoration): an initial predictor u and a conditional diffusion network
that samples the residual gt − u(lq), guided by u(lq) through Adaptive Kernel Guidance.

- Task: {{ task }}
- Training data: {{ data }}
- Training: {{ steps }} steps{{ wall_time }}
- Default sampler: {{ sampler }}
- Weights: `model.safetensors` ({{ dtype }}); networks and sampler in `config.json`

## Use

```bash
python -m ucdir.restore pretrained={{ name }} input=<photo or folder> output=<folder>{{ use_args }}
```

```python
from ucdir.hub import UCDIR
model = UCDIR.load("{{ name }}")
restoration = model.restore(lq)   # lq: (B, 3, H, W) in [0, 1]
```

## Last validation

{{ metrics }}
{{ recipe }}

## Licence and citation

Weights: {{ license }}. Cite the UCDIR paper: Zhang et al., "A Unified Conditional Framework for
Diffusion-based Image Restoration", arXiv:2305.20049, 2023.
"""


class PretrainedNotFoundError(FileNotFoundError):
    """`pretrained=` names no exported folder, no shipped model, and no reachable hub repo."""


class UCDIR(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="ucdir",
    license="apache-2.0",
    paper_url="https://arxiv.org/abs/2305.20049",
    tags=["image-restoration", "diffusion", "ucdir"],
    model_card_template=MODEL_CARD,
):
    """A trained ucdir model: both networks, the default sampler and what the model expects.

    The constructor arguments are what `config.json` holds (the mixin writes and reads them).

    Args:
        predictor: Hydra config of the initial predictor (`ucdir.models.InitialPredictor`).
        denoiser: Hydra config of the diffusion network (`ucdir.models.ConditionalUNet`).
        sampler: Hydra config of the default sampler (with its `schedule`), for `restore`.
        task: what the model was trained for: `name`, `lq_channels`, `aux_scalars`, ...
    """

    def __init__(
        self,
        predictor: dict[str, Any],
        denoiser: dict[str, Any],
        sampler: dict[str, Any] | None = None,
        task: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        for name, node in (("predictor", predictor), ("denoiser", denoiser)):
            check_targets(node, ("ucdir.models.",), f"config.json: {name}")
        if sampler is not None:
            check_targets(sampler, ("ucdir.", "diffusers."), "config.json: sampler")
        self.predictor = instantiate(predictor)
        self.denoiser = instantiate(denoiser)
        self.predictor_config, self.denoiser_config = dict(predictor), dict(denoiser)
        self.sampler_config = sampler
        self.task = dict(task or {})
        self.weights_file: str | None = None  # set by `load`

    def default_sampler(self) -> Any:
        """The sampler the model was exported with (None when it has none)."""
        return None if self.sampler_config is None else instantiate(self.sampler_config)

    @torch.no_grad()
    def restore(self, lq: Tensor, sampler: Any = None, **kwargs: Any) -> Any:
        """`ucdir.restore.restore` with this model's networks (and its default sampler)."""
        from ucdir.restore import restore

        chosen = sampler if sampler is not None else self.default_sampler()
        if chosen is None:
            raise ValueError("this model has no default sampler: pass sampler=")
        return restore(lq, self.predictor, self.denoiser, chosen, **kwargs)

    @classmethod
    def load(cls, name_or_path: str | Path, **kwargs: Any) -> UCDIR:
        """An exported folder, a model shipped in the package (by name), or a hub id.

        Raises:
            PretrainedNotFoundError: naming what was looked for, when none of them exists (a hub
                id offline or not found included).
        """
        target = resolve_pretrained(name_or_path)
        try:
            model = cls.from_pretrained(target, strict=True, **kwargs)
        except (OSError, ValueError) as err:
            if Path(target).is_dir():
                raise
            raise PretrainedNotFoundError(
                f"pretrained={name_or_path!s}: no such folder, no shipped model of that name "
                f"(shipped: {', '.join(shipped_models()) or 'none'}), and the hub repo could not "
                f"be fetched ({type(err).__name__}: {str(err)[:300]}); offline, download it "
                "beforehand or pass an exported folder"
            ) from err
        if Path(target).is_dir():
            model.weights_file = str(Path(target) / "model.safetensors")
        else:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(target, "model.safetensors")
            model.weights_file = cached if isinstance(cached, str) else None
        return model.eval()


def shipped_models() -> list[str]:
    """Names of the models shipped inside the package."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "config.json").is_file())


def resolve_pretrained(name_or_path: str | Path) -> str:
    """An exported folder as is, a shipped model's name as its folder, anything else as a hub id.

    Raises:
        PretrainedNotFoundError: for a folder without `config.json`, or a name that is neither
            a folder nor a shipped model nor a hub id (`user/repo`).
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PretrainedNotFoundError(
                f"pretrained={name_or_path!s}: the folder has no config.json (export a checkpoint "
                "with `python -m ucdir.export ckpt_path=… output=…`)"
            )
        return str(path)
    if str(name_or_path) in shipped_models():
        return str(SHIPPED_DIR / str(name_or_path))
    if str(name_or_path).count("/") == 1 and not str(name_or_path).startswith((".", "/")):
        return str(name_or_path)  # a hub id: user/repo
    raise PretrainedNotFoundError(
        f"pretrained={name_or_path!s}: no such folder and no shipped model of that name "
        f"(shipped: {', '.join(shipped_models()) or 'none'}); a hub id looks like user/repo"
    )
