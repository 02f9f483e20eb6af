"""Fixtures of the DCR tests: original-format checkpoints and loading them as a user would."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def original_checkpoint(state: dict, *, ddp: bool, centers: dict | None = None) -> dict:
    """Wrap a state dict the way the original train.py saves it (``module.`` under DDP)."""
    prefix = "module." if ddp else ""
    return {
        "epoch": 3,
        "state_dict": {prefix + k: v for k, v in state.items()},
        "criterion": centers or {},
        "optimizer": {"state": {}, "param_groups": []},
        "monitor": {"best": 0.5, "num_bad_epochs": 0},
    }


@pytest.fixture
def save_original(tmp_path):
    def save(state: dict, *, ddp: bool, centers: dict | None = None, name: str = "model_best.pth.tar") -> Path:
        path = tmp_path / name
        torch.save(original_checkpoint(state, ddp=ddp, centers=centers), path)
        return path

    return save


@pytest.fixture
def load_into():
    """Load a checkpoint file through facerec's public, strict loader."""
    from facerec.weights import load_weights

    def load(model: torch.nn.Module, path: Path) -> None:
        load_weights(model, path)

    return load


def _pattern(identity: int, sample: int, size: int, noise: float = 0.05):
    """A face stand-in: a smooth identity-specific colour pattern plus per-sample noise."""
    import numpy as np

    rng = np.random.default_rng(identity * 1000 + sample)
    ident = np.random.default_rng(identity)
    yy, xx = np.mgrid[0:size, 0:size] / size
    f = ident.uniform(2, 8, size=(3, 2))
    ph = ident.uniform(0, 6.3, size=3)
    img = np.stack([np.sin(f[c, 0] * xx + f[c, 1] * yy + ph[c]) for c in range(3)], -1) * 0.4 + 0.5
    return (np.clip(img + noise * rng.standard_normal(img.shape), 0, 1) * 255).astype(np.uint8)


def _save(path: Path, arr) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=95)


@pytest.fixture(scope="session")
def dcr_root(tmp_path_factory) -> Path:
    """A small data root in the original's layout (Casia list, LFW pair list, SCface folders)."""
    root = tmp_path_factory.mktemp("dcr_root")
    lines = []
    for sid in range(20):
        for k in range(3):
            rel = f"{sid:07d}/{k:03d}.jpg"
            _save(root / "Casia" / "120x120_120" / rel, _pattern(sid, k, 64))
            lines.append(f"{rel} {sid}")
    (root / "Casia" / "casia_cleaned_list.txt").write_text("\n".join(lines) + "\n")
    pairs = []
    for p in range(40):  # blocks of genuine / impostor pairs
        a = 100 + p % 20
        if (p // 5) % 2 == 0:
            pairs.append((f"P{a}/P{a}_0001.jpg", f"P{a}/P{a}_0002.jpg", 1))
        else:
            b = 100 + (p + 7) % 20
            pairs.append((f"P{a}/P{a}_0001.jpg", f"P{b}/P{b}_0002.jpg", 0))
    for pid in range(100, 120):
        for k in (1, 2):
            _save(root / "LFW" / "LFW_120x120_120" / f"P{pid}" / f"P{pid}_{k:04d}.jpg", _pattern(pid, k, 120))
    (root / "LFW" / "lfw_test_pair.txt").write_text("".join(f"{a} {b} {same}\n" for a, b, same in pairs))
    sc = root / "SCface"
    for nnn in list(range(1, 5)) + list(range(51, 59)):
        _save(sc / "mugshot_frontal_cropped_all" / f"{nnn:03d}_frontal.JPG", _pattern(500 + nnn, 0, 120, 0.02))
        for d, px in zip((1, 2, 3), (24, 40, 64)):
            for cam in range(1, 6):
                _save(
                    sc / f"surveillance_cameras_distance_{d}" / f"{nnn:03d}_cam{cam}_{d}.jpg",
                    _pattern(500 + nnn, 10 * d + cam, px, 0.08),
                )
    return root
