"""ucdir: a unified conditional framework for diffusion-based image restoration (UCDIR)."""

from omegaconf import ListConfig, OmegaConf

__version__ = "0.1.0"


def _default_metrics(which: str) -> ListConfig:
    """`${ucdir.metrics:paper}` in the configs: a default list of `ucdir.metrics.specs` (a
    `ListConfig`, not a list, so that `OmegaConf.resolve` and `instantiate` accept it)."""
    from ucdir.metrics.specs import default_metrics  # torch and the metrics only when resolved

    return OmegaConf.create(default_metrics(which))


# here, so that any config read by any ucdir entry point or test can resolve it
if not OmegaConf.has_resolver("ucdir.metrics"):
    OmegaConf.register_new_resolver("ucdir.metrics", _default_metrics)
