"""One-off check (not run in CI): LFW 10-fold accuracy of dlib's own descriptors on the chips facerun feeds
the port, scored with facerun's pairs protocol, and the port on the same uint8 chips.

    pip install -r requirements/real-models.txt   # dlib-bin is the reference here, never a dependency
    python plugins/facerec-dlib/scripts/lfw_dlib_reference.py ../shared/data/lfw --cache /tmp/lfw-dlib

The chips: every image of the shared LFW (aligned to the ArcFace 112 template) warped into dlib's 150x150
chip (template dlib150) exactly as `facerun eval` does, then rounded to uint8 because dlib takes 8-bit
images. dlib-bin runs ~11 images/s on one core, so the descriptors are computed in chunks kept in
``--cache``; ``--limit N`` stops after N new images (rerun to continue: on a shared machine, short runs
finish where a long one is starved). When every chunk is there it prints one JSON line per embedder:
accuracy, std, TAR@FAR, images/s, and the cosine between the two.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import facerec
from facerec.data.align import template_warp
from facerec.protocols.common import FeatureTable, iter_image_batches

CHUNK = 256


def _chips(paths: list[Path], warp) -> np.ndarray:
    out = [
        (warp(b) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        for b in iter_image_batches(paths, image_size=warp.load_size, batch_size=64)
    ]
    return torch.cat(out).numpy()  # [N, 150, 150, 3] RGB uint8


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lfw", help="folder with pairs.txt and the aligned images")
    ap.add_argument("--cache", required=True, type=Path, help="folder for the per-chunk descriptors")
    ap.add_argument("--max-pairs", type=int)
    ap.add_argument("--limit", type=int, default=0, help="stop after this many new images (0: no limit)")
    args = ap.parse_args()

    import dlib

    proto = facerec.create("protocol", "pairs", data=args.lfw, max_pairs=args.max_pairs)
    keys = proto.items()
    warp = template_warp(proto.template, "dlib150", 150)
    weights = facerec.weights.resolve("dlib-resnet29")
    rec = dlib.face_recognition_model_v1(str(weights))
    net = facerec.load_weights(facerec.create("backbone", "dlib-resnet29"), weights).eval()
    from facerec.inference import embed_tensor, optimize_for_inference

    fast = optimize_for_inference(net)
    args.cache.mkdir(parents=True, exist_ok=True)
    done = 0
    for start in range(0, len(keys), CHUNK):
        target = args.cache / f"chunk{start:06d}.npz"
        if target.is_file():
            continue
        if args.limit and done >= args.limit:
            print(f"{done} images done this run; rerun to continue", file=sys.stderr)
            return 3
        chips = _chips([proto.root / k for k in keys[start : start + CHUNK]], warp)
        t0 = time.process_time()
        ref = np.stack([np.asarray(d) for d in rec.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])])
        t1 = time.process_time()
        port = embed_tensor(fast, torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 255, batch_size=64).numpy()
        t2 = time.process_time()
        tmp = target.with_suffix(".tmp.npz")
        np.savez(tmp, dlib=ref, port=port, dlib_cpu_s=t1 - t0, port_cpu_s=t2 - t1)
        tmp.rename(target)
        done += len(chips)
        print(
            f"chunk {start}: {len(chips)} images, dlib {len(chips) / (t1 - t0):.1f} / port "
            f"{len(chips) / (t2 - t1):.1f} images per CPU second",
            file=sys.stderr,
        )
    parts = [np.load(args.cache / f"chunk{s:06d}.npz") for s in range(0, len(keys), CHUNK)]
    ref, port = np.concatenate([p["dlib"] for p in parts]), np.concatenate([p["port"] for p in parts])
    cpu = {
        "dlib": sum(float(p["dlib_cpu_s"]) for p in parts),
        "facerec-dlib": sum(float(p["port_cpu_s"]) for p in parts),
    }
    cos = (ref * port).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(port, axis=1)
    for name, emb in (("dlib", ref), ("facerec-dlib", port)):
        m = proto.evaluate_features(FeatureTable(keys, torch.from_numpy(emb).float())).metrics
        print(
            json.dumps(
                {
                    "embedder": name,
                    "chips": "facerec warp arcface112->dlib150, rounded to uint8",
                    "accuracy": round(100 * m["accuracy"], 2),
                    "std": round(100 * m["accuracy_std"], 2),
                    **{k: round(100 * v, 2) for k, v in m.items() if k.startswith("tar@")},
                    "n_pairs": int(m["n_pairs"]),
                    "images": len(emb),
                    "images_per_cpu_s": round(len(emb) / cpu[name], 1),
                    "torch_threads": torch.get_num_threads(),
                }
            )
        )
    print(json.dumps({"cosine_port_vs_dlib_min": float(cos.min()), "mean": float(cos.mean())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
