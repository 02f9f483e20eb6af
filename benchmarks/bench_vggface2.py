"""VGGFace2: (1) feature extraction, facerec (inference mode, batched, flip-average + L2 in one pass) vs
the original extractor's path (autograd left on - ``volatile=True`` is a no-op in modern torch - and
``gc.collect()`` every batch, flip as a second run); (2) loading weights: the released .pkl through the
restricted unpickler + converter vs the converted safetensors file."""

from __future__ import annotations

import gc
import os
import pickle
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

try:
    from benchmarks.common import compare, main, record
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.common import compare, main, record


def _device() -> str:
    return os.environ.get("FACEREC_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")


def bench_extract(arch: str, batch: int, repeats: int, device: str) -> dict:
    from facerec_vggface2.models import ARCHS

    torch.manual_seed(0)
    model = ARCHS[arch]().to(device).eval()
    images = torch.rand(batch, 3, 256, 256, device=device)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def ours():
        with torch.inference_mode():
            x = model.input_spec.prepare(images)
            f = F.normalize((model(x) + model(x.flip(-1))) / 2, dim=1)
        sync()
        return f

    def original():  # two passes (plain + --horizontal_flip), autograd on, gc per batch, combine after
        x = model.input_spec.prepare(images)
        f1 = model(x).detach()
        gc.collect()
        f2 = model(x.flip(-1)).detach()
        gc.collect()
        sync()
        return F.normalize((f1 + f2) / 2, dim=1)

    assert torch.allclose(ours(), original(), atol=1e-4)
    timing = compare(ours, original, items=batch, repeats=repeats, warmup=1)
    return record(
        f"vggface2_extract_{arch}_flip_l2_b{batch}",
        "images/s (224 crop, flip-averaged, L2)",
        timing,
        device=device,
        notes="same features (checked)",
    )


def bench_load(repeats: int) -> dict:
    import facerec
    from facerec.weights import save_weights
    from facerec_vggface2.models import VGGFace2ResNet50

    model = VGGFace2ResNet50()
    with tempfile.TemporaryDirectory() as tmp:
        pkl, st = Path(tmp) / "resnet50_ft_weight.pkl", Path(tmp) / "resnet50_ft.safetensors"
        with open(pkl, "wb") as f:
            pickle.dump(
                {k: v.numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")},
                f,
                protocol=2,
            )
        save_weights(model, st)
        target = VGGFace2ResNet50()
        timing = compare(
            lambda: facerec.load_weights(target, st),
            lambda: facerec.load_weights(target, pkl),
            items=1,
            repeats=repeats,
            warmup=1,
        )
    return record(
        "vggface2_load_resnet50",
        "weight files loaded/s (safetensors vs released .pkl)",
        timing,
        notes="both strict; the .pkl goes through the restricted unpickler and the converter",
    )


def run(quick: bool) -> list[dict]:
    device = _device()
    if quick:
        return [bench_extract("resnet50", 2, 2, device), bench_load(2)]
    batch = 64 if device.startswith("cuda") else 8
    return [bench_extract("resnet50", batch, 5, device), bench_extract("senet50", batch, 5, device), bench_load(5)]


if __name__ == "__main__":
    main(run)
