"""Trained models as artifacts: `UCDIR`, a folder of `model.safetensors` + `config.json` + model
card `README.md`, saved, loaded and pushed by huggingface_hub's `PyTorchModelHubMixin`.

    model = UCDIR.load("outputs/export/jpeg")          # an exported folder
    model = UCDIR.load("user/ucdir-jpeg")              # a hub id (downloaded once, then cached)
    out = model.restore(lq)                            # the model's own default sampler

Loading reads `config.json` (bounded, as data) and `model.safetensors` (no pickle): the networks
and the sampler are built only from the allow-list of `ucdir.from_file`, with their sizes bounded
before allocation, and weights with non-finite values are refused.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from hydra.utils import instantiate
from omegaconf import DictConfig
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from ucdir.checkpoints import (
    check_checkpoint_file,
    check_finite,
    count_nonfinite,
    file_hash,
    load_state,
    read_checkpoint,
    run_config,
)
from ucdir.diffusion.sampling import DistilledSampler, RegressionSampler, SamplerLike
from ucdir.from_file import UnsafeConfigError, build, build_networks, check, check_plain
from ucdir.restore.core import Restoration, restore

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
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
- Training: {{ steps }} steps{{ wall_time }}{{ blend }}
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
        nets = build_networks(predictor, denoiser, f"{CONFIG_FILE}: ")
        self.predictor, self.denoiser = nets.predictor, nets.denoiser
        self.predictor_config, self.denoiser_config = nets.predictor_config, nets.denoiser_config
        where = f"{CONFIG_FILE}: sampler"
        self.sampler_config = (
            None if sampler is None else check(sampler, "sampler", where).as_config()
        )
        self.task = check_plain(dict(task or {}), f"{CONFIG_FILE}: task")
        self.weights_file: str | None = None  # set by `load` / `from_checkpoint`
        self.source: dict[str, str | None] = {"ckpt_path": None, "pretrained": None}
        self.record: dict[str, Any] | None = None  # a checkpoint's model config (sidecars)
        self.training_run: dict[str, Any] | None = None  # a checkpoint's run config and step
        self._sha256: str | None = None
        # what save_pretrained writes: the normalised configs, never the raw arguments
        self._hub_mixin_config = {
            "predictor": self.predictor_config,
            "denoiser": self.denoiser_config,
            "sampler": self.sampler_config,
            "task": self.task,
        }

    def default_sampler(self) -> Any:
        """The sampler the model was exported with (None when it has none)."""
        if self.sampler_config is None:
            return None
        return build(self.sampler_config, "sampler", f"{CONFIG_FILE}: sampler")

    def sampler_for(self, chosen: Any = None) -> SamplerLike:
        """The sampler a run uses: the model's own (`chosen` None, or a config without
        `_target_`, such as `sampler=model`, whose other keys, e.g. `steps`, override the own
        one's), else `chosen` (a composed Hydra config or a sampler). A regression model always
        makes its one forward.

        Raises:
            ValueError: the model has no sampler of its own and none was chosen.
        """
        own = self.default_sampler()
        if chosen is None or _is_override(chosen):
            if own is None:
                raise ValueError(
                    "this model has no sampler of its own: choose one, e.g. sampler=ddpm "
                    "(the paper's) or sampler=dpmpp sampler.steps=10"
                )
            changes = {k: v for k, v in dict(chosen or {}).items() if v is not None}
            if not changes or isinstance(own, RegressionSampler):
                return own
            config = {**self.sampler_config, **changes}  # type: ignore[dict-item]
            return build(config, "sampler", "sampler (the model's own, overridden)")
        sampler = instantiate(chosen) if _is_config(chosen) else chosen
        if isinstance(own, RegressionSampler) and not isinstance(sampler, RegressionSampler):
            log.info("a regression model: restored with one forward (sampler=regression)")
            return own  # type: ignore[return-value]
        if isinstance(own, DistilledSampler) and not isinstance(sampler, DistilledSampler):
            log.warning(
                "a distilled student: it was trained for its own few-step sampler (%s, %d "
                "steps); %s runs it off its training",
                own.name,
                own.steps,
                getattr(sampler, "name", type(sampler).__name__),
            )
        return sampler

    @property
    def sha256(self) -> str:
        """SHA-256 of the weights file (hashed into sidecars), computed once."""
        if self._sha256 is None:
            if self.weights_file is None:
                raise ValueError("this model was not loaded from a file: no weights hash")
            self._sha256 = file_hash(self.weights_file)
        return self._sha256

    @property
    def config(self) -> dict[str, Any]:
        """What the sidecars record as the model: a checkpoint's model config, or the networks
        and sampler of `config.json`."""
        if self.record is not None:
            return self.record
        return {
            "predictor": self.predictor_config,
            "denoiser": self.denoiser_config,
            "sampler": self.sampler_config,
        }

    @torch.no_grad()
    def restore(self, lq: Tensor, sampler: Any = None, **kwargs: Any) -> Restoration:
        """`ucdir.restore.restore` with this model's networks and its own sampler (or
        `sampler`, as for `sampler_for`)."""
        return restore(lq, self.predictor, self.denoiser, self.sampler_for(sampler), **kwargs)

    @classmethod
    def from_checkpoint(cls, ckpt_path: str | Path) -> UCDIR:
        """The model of a training checkpoint (`python -m ucdir.train`): networks and sampler
        rebuilt from the run config stored inside it (allow-listed, bounded), its EMA weights.

        Raises:
            UnsafeConfigError: the stored config names anything outside the allow-list.
            ValueError: no ucdir run config, weights that do not fit, or non-finite weights.
        """
        path = check_checkpoint_file(ckpt_path)
        ckpt = read_checkpoint(path)
        cfg = run_config(ckpt)
        stored: dict = cfg["model"] if isinstance(cfg.get("model"), dict) else {}
        for role in ("predictor", "denoiser", "sampler"):  # refusals named as the stored keys
            if role != "sampler" or stored.get(role) is not None:
                check(stored.get(role), role, f"ckpt_path: model.{role}")  # type: ignore[arg-type]
        task = cfg.get("task") if isinstance(cfg.get("task"), dict) else {}
        model = cls(stored["predictor"], stored["denoiser"], stored.get("sampler"), task)
        load_state(model.predictor, ckpt, prefix="predictor.")
        load_state(model.denoiser, ckpt, prefix="denoiser.")
        check_finite(model.predictor, ckpt_path, "predictor.")
        check_finite(model.denoiser, ckpt_path, "denoiser.")
        model.weights_file, model.record = str(ckpt_path), stored
        model.source = {"ckpt_path": str(ckpt_path), "pretrained": None}
        model.training_run = {"config": cfg, "global_step": int(ckpt.get("global_step", 0))}
        return model.eval()

    @classmethod
    def load(cls, name_or_path: str | Path, **hub_kwargs: Any) -> UCDIR:
        """An exported folder, a model shipped in the package (by name), or a hub id
        (`hub_kwargs`, e.g. `revision=`, go to `hf_hub_download`).

        Raises:
            PretrainedNotFoundError: naming what was looked for, when none of them exists (a hub
                id offline or not found included).
            UnsafeConfigError: `config.json` names anything outside the allow-list, a value out
                of bounds or a model above the size limits; nothing of it was run or allocated.
            ValueError: `config.json` is too large or not JSON, or `model.safetensors` is corrupt,
                does not fit the networks or holds non-finite values (the tensor named).
        """
        target = resolve_pretrained(name_or_path)
        if Path(target).is_dir():
            config_file, weights = Path(target) / CONFIG_FILE, Path(target) / WEIGHTS_FILE
        else:
            config_file, weights = (
                _download(str(name_or_path), target, name, hub_kwargs)
                for name in (CONFIG_FILE, WEIGHTS_FILE)
            )
        model = cls(**read_config(config_file))
        load_weights(model, weights)
        model.weights_file = str(weights)
        model.source = {"ckpt_path": None, "pretrained": str(name_or_path)}
        return model.eval()

    @classmethod
    def _from_pretrained(cls, *, model_id: str, **kwargs: Any) -> UCDIR:  # type: ignore[override]
        """The mixin's `from_pretrained` loads through `load` (safetensors only, checked)."""
        hub = {k: kwargs[k] for k in ("revision", "cache_dir", "token") if kwargs.get(k)}
        return cls.load(model_id, **hub)


def _is_config(node: Any) -> bool:
    return isinstance(node, Mapping | DictConfig)


def _is_override(node: Any) -> bool:
    """A sampler config that names no class: changes to the model's own sampler."""
    return _is_config(node) and "_target_" not in node


MAX_CONFIG_BYTES = 1 << 20
"""A model's `config.json` is a few kB; a larger one is refused before it is read."""


def _download(given: str, repo: str, filename: str, hub_kwargs: Mapping[str, Any]) -> Path:
    try:
        return Path(hf_hub_download(repo, filename, **hub_kwargs))
    except (OSError, ValueError) as err:  # offline, not found, no such file in the repo
        raise PretrainedNotFoundError(
            f"pretrained={given}: no such folder, no shipped model of that name "
            f"(shipped: {', '.join(shipped_models()) or 'none'}), and {filename} of the hub repo "
            f"could not be fetched ({type(err).__name__}: {str(err)[:300]}); offline, download "
            "it beforehand or pass an exported folder"
        ) from err


def read_config(path: Path) -> dict[str, Any]:
    """A model's `config.json` as plain data, bounded in size and depth, with only the keys a
    model has (`predictor`, `denoiser`, `sampler`, `task`); it is checked further when built.

    Raises:
        ValueError: too large, not JSON, or not a mapping of those keys.
    """
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise UnsafeConfigError(
            f"{path}: {size:,} bytes, more than a model's config.json may have "
            f"({MAX_CONFIG_BYTES:,}); not read"
        )
    try:
        config = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{path}: not a valid JSON model config ({str(err)[:200]})") from None
    keys = {"predictor", "denoiser", "sampler", "task"}
    if not isinstance(config, dict) or not {"predictor", "denoiser"} <= set(config) <= keys:
        found = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise UnsafeConfigError(
            f"{path}: a model config has the keys predictor, denoiser and optionally sampler, "
            f"task; found {found}"
        )
    return config


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Fills `model` from a safetensors file: every tensor of the model present with its shape,
    nothing else, and every value finite; the model is untouched when the file is refused.

    Raises:
        ValueError: naming the file and the first missing, unexpected, mis-shaped or
            non-finite tensor (or why the file cannot be read).
    """
    state = model.state_dict()
    loaded: dict[str, Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            for missing in sorted(set(state) - keys)[:1]:
                raise ValueError(f"{path}: tensor {missing!r} of the model is missing")
            for extra in sorted(keys - set(state))[:1]:
                raise ValueError(f"{path}: tensor {extra!r} is not part of the model")
            for key in sorted(keys):
                shape = tuple(f.get_slice(key).get_shape())
                if shape != tuple(state[key].shape):
                    raise ValueError(
                        f"{path}: tensor {key!r} has shape {list(shape)}, the model's is "
                        f"{list(state[key].shape)}"
                    )
                tensor = f.get_tensor(key)
                if bad := count_nonfinite(tensor):
                    raise ValueError(
                        f"{path}: tensor {key!r} has {bad} non-finite value(s) (NaN or inf): "
                        "the file is corrupt; nothing was loaded"
                    )
                loaded[key] = tensor
    except SafetensorError as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    with torch.no_grad():
        for key, tensor in loaded.items():
            state[key].copy_(tensor)


def shipped_models() -> list[str]:
    """Names of the models shipped inside the package."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / CONFIG_FILE).is_file())


def resolve_pretrained(name_or_path: str | Path) -> str:
    """An exported folder as is, a shipped model's name as its folder, anything else as a hub id.

    Raises:
        PretrainedNotFoundError: for a folder without `config.json`, or a name that is neither
            a folder nor a shipped model nor a hub id (`user/repo`).
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
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
