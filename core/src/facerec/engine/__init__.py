"""Training engine: :class:`TrainConfig`, the generic :class:`Trainer`, :func:`train_classifier`,
safetensors checkpoints with exact resume, schedules, DDP helpers, JSONL logs and progress."""

from .checkpoint import CheckpointError, load_checkpoint, module_state, save_checkpoint
from .classifier import StepIndices, dataset_batches, random_flip, train_classifier
from .config import TrainConfig
from .schedules import lr_factor
from .trainer import Trainer, seed_everything

__all__ = ["CheckpointError", "StepIndices", "TrainConfig", "Trainer", "dataset_batches", "load_checkpoint",
           "lr_factor", "module_state", "random_flip", "save_checkpoint", "seed_everything", "train_classifier"]
