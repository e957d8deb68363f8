"""Training: the trainer, its tasks (tokenizer, transformer) and the ``train`` command."""

from infinity_train.train.entry import main
from infinity_train.train.trainer import NonFiniteError, Trainer, TrainState

__all__ = ["NonFiniteError", "TrainState", "Trainer", "main"]
