"""Low-resolution verification on core's synthetic faces, scored like DCR's LFW protocol.

Identities are taken from a range disjoint from the training datasets' (``first_identity``), pairs
come in contiguous blocks of genuine and impostor pairs so every fold holds both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from facerec.api import Backbone, EvalResult, Protocol
from facerec.data.synthetic import render
from facerec.errors import ParameterError

from .evaluation import HR, collect_pairs, verification_metrics
from .lowres import degrade
from .model import DEFAULT_SCALES, PAPER


def synthetic_pairs(num_pairs: int, num_ids: int, first_identity: int) -> tuple[torch.Tensor, ...]:
    """(identity 1, identity 2, same): each of the 10 contiguous folds holds a block of genuine then a
    block of impostor pairs."""
    i = torch.arange(num_pairs)
    block = max(1, num_pairs // 20)
    same = (i // block) % 2 == 0
    a = first_identity + (i * 7) % num_ids
    b = torch.where(same, a, first_identity + (i * 7 + 1 + (i * 13) % (num_ids - 1)) % num_ids)
    return a, b, same


class SyntheticLowResPairs(Protocol):
    """Synthetic LR verification (DCR convention): HR image 1 vs image 2 at 8/12/16/20 px, 10-fold."""

    paper = PAPER
    convention = (
        "synthetic identities disjoint from training; image 1 HR (task IV: at s px too), image 2 "
        "(another sample) at s px resized back; cosine; DCR 10-fold (contiguous folds, "
        "grid arange(-1,1,0.005), score > t, largest threshold wins ties); acc_hr = HR vs HR"
    )

    def __init__(
        self,
        image_size: int = 120,
        num_pairs: int = 600,
        num_ids: int = 200,
        scales: Sequence[int] = DEFAULT_SCALES,
        seed: int = 0,
        first_identity: int = 1_000_000,
        include_hr: bool = True,
        task: Literal["V", "IV"] = "V",
    ):
        if task not in ("V", "IV"):
            raise ParameterError(f"protocol dcr-synthetic-lowres: task must be V or IV, got {task!r}")
        self.task = task
        self.image_size = int(image_size)
        self.scales = tuple(int(s) for s in scales)
        self.include_hr = include_hr
        a, b, self.same = synthetic_pairs(int(num_pairs), int(num_ids), int(first_identity))
        self._ids = (a, b)
        self.seed = int(seed)

    def _batches(self, batch_size: int):
        a, b = self._ids
        for start in range(0, len(a), batch_size):
            sl = slice(start, start + batch_size)
            n = len(a[sl])
            img1 = render(a[sl], torch.zeros(n, dtype=torch.long), seed=self.seed, size=self.image_size)
            img2 = render(b[sl], torch.ones(n, dtype=torch.long), seed=self.seed, size=self.image_size)
            probes: dict = {s: degrade(img2, s) for s in self.scales}
            if self.include_hr:
                probes[HR] = img2
            if self.task == "IV":  # image 1 at the probe's resolution too
                img1 = {s: degrade(img1, s) for s in self.scales} | ({HR: img1} if self.include_hr else {})
            yield img1, probes

    def evaluate(
        self, model: Backbone, *, device: str = "cpu", batch_size: int = 100, progress: bool = False
    ) -> EvalResult:
        emb1, emb2 = collect_pairs(model, self._batches(batch_size), batch_size=batch_size, device=device)
        metrics, artefacts = verification_metrics(model, emb1, emb2, self.same, device=device)
        metrics["pairs"] = float(len(self.same))
        return EvalResult(metrics=metrics, artefacts=artefacts, convention=self.convention)
