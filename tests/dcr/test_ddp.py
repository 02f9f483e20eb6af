"""The dcr recipe under DDP on CPU: 2 processes (torchrun, gloo) run the real facerun trunk + branch stages.

BatchNorm statistics are per process, so a 2-process trunk stage legitimately differs from a 1-process
one; this checks that both stages run, synchronise (centres all-reduced, one branch checkpoint) and report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


def test_two_process_gloo_run(tmp_path):
    out = tmp_path / "ddp"
    facerun = Path(sys.executable).with_name("facerun")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(facerun),
        "train",
        "--backbone",
        "dcr-trunk",
        "--recipe",
        "dcr",
        "--dataset",
        "synthetic-lowres",
        "--out",
        str(out),
        "--param",
        "dataset.num_ids=8",
        "--param",
        "dataset.per_id=4",
        "--param",
        "backbone.layers=(1,1,1,1)",
        "--param",
        "backbone.image_size=24",
        "--param",
        "recipe.scales=(8,12)",
        "--param",
        "train.batch_size=8",
        "--param",
        "protocol.num_pairs=20",
        "--param",
        "protocol.num_ids=10",
        "--steps",
        "3",
        "--param",
        "recipe.branch_steps=2",
        "--param",
        "train.log_every=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # rank 0 alone prints the summary (issue 24 item 19: every rank used to)
    assert proc.stdout.count("run directory:") == 1, proc.stdout
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = {(r["stage"], r["step"]) for r in log if r.get("kind") == "train"}
    assert steps == {("trunk", 1), ("trunk", 2), ("trunk", 3), ("branch", 1), ("branch", 2)}
    rows = {r["resolution"] for r in json.loads((out / "metrics.json").read_text())["per_resolution"]}
    assert rows == {"8 px", "12 px", "hr", "mean"}
    final = load_file(str(out / "backbone.safetensors"))
    assert all(torch.isfinite(v).all() for v in final.values() if v.is_floating_point())
    # the branches trained from their specialised init (fc1 = identity)
    assert not torch.equal(final["branches.1.fc1.weight"], torch.eye(512))
