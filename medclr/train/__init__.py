"""Training: the loop (:func:`train`), optimizer and schedule, checkpoints, validation and run-directory files.

>>> from medclr.config import load_config                                  # doctest: +SKIP
>>> from medclr.train import train                                         # doctest: +SKIP
>>> result = train(load_config("configs/train/tiny.yaml", ["run.max_steps=20"]))   # doctest: +SKIP
>>> result.run_dir                                                         # doctest: +SKIP
"""

from __future__ import annotations

from medclr.train.checkpoint import load_model
from medclr.train.loop import MedclrTrainingError, TrainResult, train

__all__ = ["MedclrTrainingError", "TrainResult", "load_model", "train"]
