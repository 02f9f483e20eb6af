"""facerun as a user runs it: one-line errors, non-zero exits, no tracebacks."""

from __future__ import annotations

import json
import os

import pytest


def test_help_lists_core_subcommands(run_facerun):
    out = run_facerun("--help").stdout
    for name in ("plugins", "info", "train", "eval", "extract", "generate", "data", "weights"):
        assert f"  {name}" in out


def test_unknown_backbone_is_one_line_with_suggestion(run_facerun):
    proc = run_facerun("info", "backbone", "smal-cnn", check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "did you mean small-cnn" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_kind_names_allowed_values(run_facerun):
    proc = run_facerun("info", "backbones", "x", check=False)
    assert proc.returncode == 2 and "backbone" in proc.stderr and "Traceback" not in proc.stderr


def test_info_json_describes_a_core_backbone(run_facerun):
    data = json.loads(run_facerun("info", "backbone", "small-cnn", "--json").stdout)
    assert data["kind"] == "backbone" and data["embedding_size"] is None or isinstance(data["embedding_size"], int)
    assert "width" in data["parameters"]


def test_pipeline_option_without_backbone_is_a_usage_error(run_facerun):
    proc = run_facerun("--generator", "dvg", check=False)
    assert proc.returncode == 2 and "--backbone" in proc.stderr


# `facerun plugins` run in-process (its process-wide settings apply to what follows), then torch
_FACERUN_THEN_TORCH = """
import os, resource, sys
from facerec import cli
sys.argv = ["facerun", "plugins"]
try:
    cli.run()
except SystemExit:
    pass
import torch
"""

_AFTER_FACERUN = _FACERUN_THEN_TORCH + """
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.ones(64 * 2**20 // 4)  # 64 MB, written once
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), faults)
"""


def _thp_mode() -> str | None:
    try:
        text = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return None
    return text[text.index("[") + 1:text.index("]")] if "[" in text else None


def test_facerun_backs_large_tensors_with_huge_pages():
    """facerun turns on torch's huge-page allocation (an explicit setting wins): a 64 MB tensor then costs
    tens of page faults instead of 16k."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    on = subprocess.run([sys.executable, "-c", _AFTER_FACERUN], env=env, capture_output=True, text=True, check=True)
    off = subprocess.run([sys.executable, "-c", _AFTER_FACERUN], env={**env, "THP_MEM_ALLOC_ENABLE": "0"},
                         capture_output=True, text=True, check=True)
    (flag_on, faults_on), (flag_off, faults_off) = on.stdout.split()[-2:], off.stdout.split()[-2:]
    assert (flag_on, flag_off) == ("1", "0")
    if _thp_mode() not in ("always", "madvise"):
        pytest.skip(f"transparent huge pages are {_thp_mode() or 'unavailable'} on this kernel")
    assert int(faults_off) > 10_000 and int(faults_on) < int(faults_off) / 10


_REUSE_AFTER_FACERUN = _FACERUN_THEN_TORCH + """
torch.set_num_threads(1)
faults = []
for _ in range(16):  # a batch loop: 64 MB written and freed (glibc settles within a few rounds)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(64 * 2**20 // 4).fill_(1)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults[8:]))
"""


@pytest.mark.skipif(not hasattr(__import__("ctypes").CDLL(None), "gnu_get_libc_version"), reason="needs glibc")
def test_facerun_keeps_freed_memory_for_the_next_batch():
    """With huge pages off (to see 4 KB faults), facerun's malloc setting makes a freed 64 MB block come back
    without page faults; the user's MALLOC_MMAP_THRESHOLD_ wins over it."""
    import subprocess
    import sys

    from facerec.cpu_memory import env_without_allocation_settings

    env = {**env_without_allocation_settings(os.environ), "THP_MEM_ALLOC_ENABLE": "0"}
    kept = subprocess.run([sys.executable, "-c", _REUSE_AFTER_FACERUN], env=env, capture_output=True, text=True,
                          check=True)
    own = subprocess.run([sys.executable, "-c", _REUSE_AFTER_FACERUN], capture_output=True, text=True, check=True,
                         env={**env, "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20)})
    faults_kept, faults_own = int(kept.stdout.split()[-1]), int(own.stdout.split()[-1])
    assert faults_own > 10_000 and faults_kept < faults_own / 10
