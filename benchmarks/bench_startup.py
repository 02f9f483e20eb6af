"""Start-up: `facerun plugins` against `python -c "import torch"`, both as fresh processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

try:
    from benchmarks.common import compare, main, record
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.common import compare, main, record


def run(quick: bool = True) -> list[dict]:
    facerun = str(Path(sys.executable).with_name("facerun"))
    ours = lambda: subprocess.run([facerun, "plugins"], check=True, capture_output=True)  # noqa: E731
    base = lambda: subprocess.run([sys.executable, "-c", "import torch"], check=True, capture_output=True)  # noqa: E731
    timing = compare(ours, base, items=1, repeats=5 if quick else 15)
    return [
        record(
            "startup",
            "`facerun plugins` vs `python -c 'import torch'` (processes/s)",
            timing,
            target="facerun plugins time <= 0.5x import torch (ratio >= 2)",
        )
    ]


if __name__ == "__main__":
    main(run)
