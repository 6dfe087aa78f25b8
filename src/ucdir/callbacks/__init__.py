"""Lightning callbacks: EMA that starts from the weights at its start step, image panels, the
run config in every checkpoint, a saved stop on SIGTERM/SIGINT."""

from ucdir.callbacks.config import StoreConfig
from ucdir.callbacks.ema import EMA
from ucdir.callbacks.images import LogRestorations
from ucdir.callbacks.stop import StopOnSignal, TrainingStopped

__all__ = ["EMA", "LogRestorations", "StopOnSignal", "StoreConfig", "TrainingStopped"]
