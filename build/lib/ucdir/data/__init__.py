"""One LightningDataModule per restoration task; every loader yields `ucdir.types.PairBatch`.

Import the task modules directly (``ucdir.data.jpeg.JPEGDataModule``, ...). This package
imports nothing itself, so the raw-decoding worker processes of ``ucdir.data.sid_cache`` start
without loading torch or Lightning.
"""
