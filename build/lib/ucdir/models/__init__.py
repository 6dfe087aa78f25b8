"""The two networks of UCDIR: the initial predictor u and the conditional diffusion network f."""

from ucdir.models.denoiser import ConditionalUNet
from ucdir.models.predictor import InitialPredictor

__all__ = ["ConditionalUNet", "InitialPredictor"]
