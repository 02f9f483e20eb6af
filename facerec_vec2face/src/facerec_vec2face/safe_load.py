"""Vec2Face training checkpoints (``checkpoint-*.pth``, the released generator file) pickle
``'args': argparse.Namespace``. A Namespace only carries plain attributes, so it is admitted to torch's
weights_only unpickler (process-wide allow-list). Every module whose class loads such a file imports this
one, so ``load_weights(Discriminator(), path)`` works without importing the generator first."""

from __future__ import annotations

import argparse

import torch

torch.serialization.add_safe_globals([argparse.Namespace])
