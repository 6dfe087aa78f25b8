"""Lightning callbacks: EMA that starts from the weights at its start step, image panels."""

from ucdir.callbacks.config import StoreConfig
from ucdir.callbacks.ema import EMA
from ucdir.callbacks.images import LogRestorations

__all__ = ["EMA", "LogRestorations", "StoreConfig"]
