"""ucdir: a unified conditional framework for diffusion-based image restoration (UCDIR)."""

from omegaconf import OmegaConf

__version__ = "0.1.0"


def _default_metrics(which: str) -> list[str]:
    """`${ucdir.metrics:paper}` in the configs: a default list of `ucdir.metrics.specs`."""
    from ucdir.metrics.specs import default_metrics  # torch and the metrics only when resolved

    return default_metrics(which)


# here, so that any config read by any ucdir entry point or test can resolve it
if not OmegaConf.has_resolver("ucdir.metrics"):
    OmegaConf.register_new_resolver("ucdir.metrics", _default_metrics)
