"""ucdir: a unified conditional framework for diffusion-based image restoration (UCDIR)."""

__version__ = "0.1.0"
