"""Process-wide CPU allocation settings (facerec.cpu_memory), checked by page faults in fresh processes."""

import os
import subprocess
import sys

import pytest

from facerec.cpu_memory import env_without_allocation_settings

# A 64 MB tensor (above glibc's largest automatic mmap threshold) is written and freed, a few times as a
# batch loop does: the fewest faults of the later rounds show whether freed memory was kept for reuse
# (glibc takes a few rounds to settle: torch's aligned blocks do not fit exactly the hole a freed one leaves).
_REALLOCATE = """
import resource, sys
import torch
from facerec.cpu_memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
torch.set_num_threads(1)
faults = []
for _ in range(16):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(64 * 2**20 // 4).fill_(1)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, min(faults[8:]))
"""


def _default_env() -> dict[str, str]:
    """This environment with the allocation defaults, huge pages off (to see 4 KB page faults)."""
    return {**env_without_allocation_settings(os.environ), "THP_MEM_ALLOC_ENABLE": "0"}


def _reallocate(mode: str, **env: str) -> tuple[str, int]:
    proc = subprocess.run([sys.executable, "-c", _REALLOCATE, mode], capture_output=True, text=True, check=True,
                          env={**_default_env(), **env})
    applied, faults = proc.stdout.split()[-2:]
    return applied, int(faults)


def _glibc() -> bool:
    import ctypes

    return hasattr(ctypes.CDLL(None), "gnu_get_libc_version")


@pytest.mark.skipif(not _glibc(), reason="keep_freed_memory needs glibc's mallopt")
def test_freed_large_blocks_are_reused_without_page_faults():
    _, faults_default = _reallocate("default")
    applied, faults_kept = _reallocate("keep")
    assert applied == "True"
    assert faults_default > 10_000  # 16k pages of 4 KB, faulted in again
    assert faults_kept < faults_default / 10


@pytest.mark.skipif(not _glibc(), reason="keep_freed_memory needs glibc's mallopt")
def test_the_users_own_malloc_settings_win():
    applied, faults = _reallocate("keep", MALLOC_MMAP_THRESHOLD_=str(32 * 2**20))
    assert applied == "False" and faults > 10_000


def test_use_fast_cpu_allocation_keeps_an_explicit_huge_page_setting():
    # in a child: the settings are process-wide and must not leak into this test process
    code = ("import os; from facerec.cpu_memory import use_fast_cpu_allocation as u; "
            "print(u()['huge_pages'], os.environ.get('THP_MEM_ALLOC_ENABLE'))")
    for preset, expected in (("0", "False 0"), (None, "True 1")):
        env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
        if preset is not None:
            env["THP_MEM_ALLOC_ENABLE"] = preset
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected


_RELEASE = """
import torch
from facerec.cpu_memory import keep_freed_memory, release_freed_memory
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20
keep_freed_memory()
x = torch.ones(256 * 2**20 // 4)
del x
kept = rss_mb()
released = release_freed_memory()
print(kept, released, rss_mb())
"""


@pytest.mark.skipif(not _glibc() or not os.path.exists("/proc/self/statm"), reason="needs glibc and /proc")
def test_release_freed_memory_hands_kept_memory_back():
    proc = subprocess.run([sys.executable, "-c", _RELEASE], capture_output=True, text=True, check=True,
                          env=_default_env())
    kept, released, after = proc.stdout.split()[-3:]
    assert released == "True"
    assert int(kept) - int(after) > 200  # the freed 256 MB stayed resident until released
