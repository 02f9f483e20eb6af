"""Training engine: :class:`TrainConfig`, the generic :class:`Trainer`, :func:`train_classifier`,
safetensors checkpoints with exact resume, schedules, DDP helpers, JSONL logs and progress.

Public submodules: ``trainer``, ``checkpoint`` and ``distributed`` (DDP helpers)."""

from .checkpoint import CheckpointError, checkpoint_path, load_checkpoint, module_state, save_checkpoint
from .classifier import LoaderBatches, StepIndices, dataset_batches, has_fast_batch, random_flip, train_classifier
from .config import TrainConfig
from .logs import RunLogger
from .schedules import lr_factor
from .trainer import Trainer, seed_everything

__all__ = [
    "CheckpointError",
    "checkpoint_path",
    "LoaderBatches",
    "RunLogger",
    "StepIndices",
    "TrainConfig",
    "Trainer",
    "dataset_batches",
    "has_fast_batch",
    "load_checkpoint",
    "lr_factor",
    "module_state",
    "random_flip",
    "save_checkpoint",
    "seed_everything",
    "train_classifier",
    "checkpoint",
    "distributed",
    "trainer",
]
