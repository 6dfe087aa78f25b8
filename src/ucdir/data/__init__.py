"""The tasks' data: pair sources (clean images + a degradation, `folder`; aligned pairs on disk,
`paired` and `gopro`; SID raw files, `sid`) inside one loader shell (`base.PairDataModule`);
every loader yields `ucdir.types.PairBatch`.

Import the modules directly (``ucdir.data.folder.CleanImageDataModule``, ...). This package
imports nothing itself, so the raw-decoding worker processes of ``ucdir.data.sid_cache`` start
without loading torch or Lightning.
"""
