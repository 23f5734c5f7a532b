"""AG News topic classification with fastrnn: the showcase of the PyTorch RNN tutorial.

    python -m fastrnn.agnews train --model lstm-packed      (see ``--help``)

Modules: ``data`` (find/download/read the CSVs), ``text`` (basic_english
tokenizer, vocabulary), ``models`` (the tutorial's classifiers on either
backend), ``training`` (train/evaluate/checkpoints, DDP under torchrun), ``cli``.
"""
from .data import CLASSES, DataError
from .models import MODELS, build_model
from .text import Vocab, basic_english
from .training import (CheckpointError, TrainConfig, evaluate, load_checkpoint, load_corpus,
                       predict, train)

__all__ = ["CLASSES", "DataError", "MODELS", "build_model", "Vocab", "basic_english",
           "CheckpointError", "TrainConfig", "evaluate", "load_checkpoint", "load_corpus", "predict", "train"]
