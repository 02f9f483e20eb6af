"""Training-step throughput: facerec's Trainer (train_classifier) vs a plain PyTorch loop, same model,
same data, same optimizer settings, measured interleaved in one process."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.common import compare, main, record


def _setup(image_size: int, batch: int, amp: str):
    from facerec.api import TensorDataset
    from facerec.nn import SmallCNN
    from facerec.engine import TrainConfig, Trainer, dataset_batches
    from facerec.engine.classifier import classifier_loss, random_flip
    from facerec.heads import ArcFaceHead

    torch.manual_seed(0)
    n, classes = 1024, 64
    data = TensorDataset(torch.arange(n) % classes, images=torch.rand(n, 3, image_size, image_size))
    backbone, head = SmallCNN(width=16, image_size=image_size), ArcFaceHead(128, classes, s=30, m=0.3)
    cfg = TrainConfig(steps=10**9, batch_size=batch, lr=0.05, amp=amp, progress=False, log_every=10)
    trainer = Trainer(
        {"backbone": backbone, "head": head},
        classifier_loss(backbone, classes, augment=random_flip),
        dataset_batches(data, cfg),
        cfg,
        local_batches=True,
    )

    # the plain loop: its own copy of the same model, same data order, same optimizer settings
    pb, ph = copy.deepcopy(backbone), copy.deepcopy(head)
    opt = torch.optim.SGD([*pb.parameters(), *ph.parameters()], lr=0.05, momentum=0.9, weight_decay=5e-4)
    order = torch.randperm(n)
    state = {"i": 0}
    dtype = torch.bfloat16 if amp == "bf16" else None

    def plain(steps: int) -> None:
        for _ in range(steps):
            i = state["i"] % (n // batch)
            idx = order[i * batch : (i + 1) * batch]
            state["i"] += 1
            x, y = data.data[idx], data.labels[idx]
            x = random_flip(x)
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                loss = ph(pb(pb.input_spec.prepare(x)), y).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def ours(steps: int) -> None:
        trainer.fit(until=trainer.step + steps)

    return ours, plain


def run(quick: bool) -> list[dict]:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    cases = [(32, 64, "off")] if quick else [(32, 64, "off"), (32, 128, "bf16"), (64, 64, "off")]
    steps = 5 if quick else 20
    records = []
    for size, batch, amp in cases:
        ours, plain = _setup(size, batch, amp)
        timing = compare(lambda: ours(steps), lambda: plain(steps), items=steps * batch, repeats=3 if quick else 5)
        records.append(
            record(
                f"train step small-cnn {size}px b{batch} amp={amp}",
                f"{steps} optimizer steps (images/s), SGD momentum, ArcFace head",
                timing,
                notes="baseline: plain loop (prepare, flip, forward, loss, backward, step)",
            )
        )
    return records


if __name__ == "__main__":
    main(run)
