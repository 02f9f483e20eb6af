"""Output paths, checked before any work: writable, not under a regular file, and never replacing
what the user did not ask to replace.

A run directory carries a marker file (``.facerec-run``) from the moment a command claims it, so
``--overwrite`` can tell a facerec run (which it may replace) from a folder of the user's own files
(which it never touches). Runs made before the marker are recognised by their ``config.json``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .errors import DataError, ParameterError

RUN_MARKER = ".facerec-run"
RUN_FORMAT = "facerec-run-1"


def _writable(folder: Path) -> bool:
    mode = os.W_OK | os.X_OK
    if os.access in os.supports_effective_ids:
        return os.access(folder, mode, effective_ids=True)
    return os.access(folder, mode)


def check_writable_dir(
    path: str | os.PathLike, option: str = "--out", *, given: str | os.PathLike | None = None
) -> Path:
    """A folder a command will create (with its parents) or write into: it must not be a file, and
    its first existing ancestor must be a folder this process can write to. ``given``: the path the
    user typed, when ``path`` is derived from it (the folder of an output file)."""
    p = Path(path)
    shown = Path(given) if given is not None else p
    if p.exists() and not p.is_dir():
        where = "exists and is a file, not a folder" if given is None else f"{p} is a regular file, not a folder"
        raise DataError(f"{option} {shown}: {where}")
    ancestor = Path(os.path.abspath(p))
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise DataError(f"{option} {shown}: {ancestor} is a regular file, so nothing can be created under it")
    if not _writable(ancestor):
        raise DataError(f"{option} {shown}: {ancestor} is not writable (permission denied)")
    return p


def check_output_file(path: str | os.PathLike, option: str = "--out", *, overwrite: bool = False) -> Path:
    """A file a command will write (its folder may still be created): not a folder, not existing
    unless ``overwrite``, under a writable folder."""
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{option} {p}: is a folder, not a file")
    if p.exists() and not overwrite:
        raise DataError(f"{option} {p}: already exists; pass --overwrite to replace it")
    check_writable_dir(p.parent, option, given=p)
    return p


# ------------------------------------------------------------------------------------------ runs


def _config_names(stage: str | None) -> str:
    return "config.json" if stage is None else f"config.{stage}.json"


def _facerec_config(path: Path) -> bool:
    """A config.json written by facerec's pipeline (runs from before the marker)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"backbone", "recipe", "params"} <= set(data)


def is_run_dir(path: str | os.PathLike) -> bool:
    """Does ``path`` hold a facerec run (its marker, or a facerec ``config*.json`` of an older run)?"""
    p = Path(path)
    if (p / RUN_MARKER).is_file():
        return True
    return p.is_dir() and any(_facerec_config(c) for c in p.glob("config*.json"))


def _stage_files(run: Path, stage: str) -> list[Path]:
    """What a stage of a run writes under its own name (its config and its trainers' checkpoints)."""
    found = [run / _config_names(stage)]
    found += sorted((run / "checkpoints").glob(f"{stage}-*.safetensors"))
    return [f for f in found if f.exists()]


def claim_run_dir(
    path: str | os.PathLike,
    *,
    stage: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    resume_option: str | None = "--resume",
) -> Path:
    """Make ``path`` this command's run directory, or refuse in one line before any work.

    A new or empty folder is taken. A folder holding a run is continued with ``resume``, replaced
    with ``overwrite`` (only when it carries facerec's marker: the earlier run is deleted), and
    otherwise refused. With ``stage``, a run holding other stages takes a new one; only an earlier
    run of the same stage needs ``resume`` or ``overwrite``. A non-empty folder that holds no
    facerec run is always refused: nothing of the user's is ever overwritten. ``resume_option``
    names the command's way to continue (None where it has none).
    """
    p = check_writable_dir(path, "--out")
    if resume and overwrite:
        raise ParameterError("--resume and --overwrite exclude each other: continue the run or replace it")
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 claims; the others would find its claim
        return p
    how = (
        f"continue it with {resume_option} or replace it with --overwrite"
        if resume_option
        else "replace it with --overwrite or choose another --out"
    )
    if p.is_dir() and any(e.name != RUN_MARKER for e in p.iterdir()):  # a bare marker: an empty run
        if not is_run_dir(p):
            raise DataError(
                f"--out {p} is not empty and holds no facerec run; choose a new or empty folder "
                f"(--overwrite replaces only a facerec run)"
            )
        if stage is None:
            earlier = True
        else:
            earlier = bool(_stage_files(p, stage))
        if earlier and not resume:
            what = "a run" if stage is None else f"a run of stage {stage!r}"
            if not overwrite:
                raise DataError(f"--out {p} already holds {what}; {how}")
            if not (p / RUN_MARKER).is_file():
                raise DataError(f"--out {p} holds {what} made before run markers; delete it yourself to replace it")
            if stage is None:
                shutil.rmtree(p)
            else:
                for f in _stage_files(p, stage):
                    f.unlink()
    p.mkdir(parents=True, exist_ok=True)
    marker = p / RUN_MARKER
    if not marker.is_file():
        marker.write_text(json.dumps({"format": RUN_FORMAT}) + "\n", encoding="utf-8")
    return p


def unclaim_if_untouched(path: Path, before: set[Path], written: set[Path], created: bool) -> None:
    """After a failed start: remove what the claim and the config write added when nothing else
    appeared, so the same command can simply be run again (it is no earlier run to protect)."""
    try:
        now = set(path.rglob("*"))
    except OSError:
        return
    if now - before - written - {path / RUN_MARKER}:
        return
    try:
        for f in written:
            f.unlink(missing_ok=True)
        if not any(e.name != RUN_MARKER for e in path.iterdir()):
            (path / RUN_MARKER).unlink(missing_ok=True)
            if created:
                path.rmdir()
    except OSError:  # best effort: the error being reported matters more
        pass


__all__ = [
    "RUN_MARKER",
    "check_output_file",
    "check_writable_dir",
    "claim_run_dir",
    "is_run_dir",
    "unclaim_if_untouched",
]
