"""Evaluation reports: ``metrics.json``, a Markdown summary, per-fold numbers (CSV) and ROC/DET curves, the
one ROC / CMC plotter every picture of curves goes through (``plot_roc``, ``plot_cmc``; recipes use them
too) and image pairs side by side (``plot_image_pairs``). matplotlib is part of facerec-core's install;
where it is missing anyway, curves are written as CSV plus a message.

Every file is written to a temporary name and renamed, so a report is never half-written.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .api import EvalResult


def _atomic_write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if hasattr(x, "tolist"):  # tensors, numpy scalars
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _fmt(v: float, name: str = "") -> str:
    if isinstance(v, float) and v.is_integer() and (abs(v) >= 1 or name.startswith("n_")):
        return f"{int(v)}"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


#: What ``info["weights"]`` says when a command ran without ``--weights``.
RANDOM_INIT = "(random init)"


def random_weights_warning(command: str, what: str = "the backbone") -> str:
    """The line commands print (stderr) when they produce numbers or images from untrained weights."""
    return (
        f"warning: {command} without --weights: {what} has RANDOM weights, so its output is "
        "chance-level and says nothing about the model"
    )


def markdown_summary(results: Mapping[str, EvalResult], info: Mapping[str, Any] | None = None) -> str:
    lines = ["# Evaluation report", ""]
    if str((info or {}).get("weights", "")) == RANDOM_INIT:
        lines += [
            "> **random weights**: no `--weights` was given, the backbone is untrained; every number "
            "below is chance-level by construction.",
            "",
        ]
    for k, v in (info or {}).items():
        lines.append(f"- **{k}**: {v}")
    for name, res in results.items():
        lines += [
            "",
            f"## {name}",
            "",
            f"Convention: {res.convention}" if res.convention else "",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        lines += [f"| {k} | {_fmt(float(v), k)} |" for k, v in res.metrics.items()]
        folds = res.artefacts.get("fold_accuracy")
        if folds is not None:
            lines += ["", "Per-fold accuracy: " + ", ".join(f"{a:.4f}" for a in folds)]
    return "\n".join(lines) + "\n"


def _curve_csv(fpr: np.ndarray, tpr: np.ndarray, thr: np.ndarray | None) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["fpr", "tpr", "fnr", "threshold"])
    thr = thr if thr is not None else np.full(len(fpr), np.nan)
    for a, b, t in zip(fpr, tpr, thr):
        w.writerow([repr(float(a)), repr(float(b)), repr(float(1 - b)), repr(float(t))])
    return buf.getvalue()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return _atomic_write(Path(path), buf.getvalue())


def roc_points(artefacts: Mapping[str, Any]) -> tuple[Any, Any] | None:
    """A protocol's ROC as ``(fpr, tpr)``: top-level ``fpr``/``tpr`` or ``roc_fpr``/``roc_tpr``, or a ``roc``
    mapping with ``fpr``/``tpr``; None when the artefacts carry none."""
    for f, t in (("fpr", "tpr"), ("roc_fpr", "roc_tpr")):
        if artefacts.get(f) is not None and artefacts.get(t) is not None:
            return artefacts[f], artefacts[t]
    roc = artefacts.get("roc")
    if isinstance(roc, Mapping) and roc.get("fpr") is not None and roc.get("tpr") is not None:
        return roc["fpr"], roc["tpr"]
    return None


def _draw_roc(ax: Any, curves: Mapping[str, tuple[Any, Any]], title: str) -> None:
    """TAR against FAR (log axis; FAR = 0 cannot be drawn there) per curve, and chance (TAR = FAR) dashed."""
    low = 1.0
    for label, (far, tar) in curves.items():
        far, tar = np.asarray(far, float), np.asarray(tar, float)
        keep = far > 0
        if keep.any():
            low = min(low, float(far[keep].min()))
        ax.plot(far[keep], tar[keep], lw=1.5, label=label)
    grid = np.logspace(np.log10(low), 0, 50) if low < 1.0 else np.array([1.0])
    ax.plot(grid, grid, "k--", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("FAR (false accept rate)")
    ax.set_ylabel("TAR (true accept rate)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if len(curves) > 1:
        ax.legend(loc="lower right")


def plot_roc(curves: Mapping[str, tuple[Any, Any]], path: str | Path, title: str = "") -> Path:
    """ROC of one or several models in one picture: ``{label: (fpr, tpr)}``."""
    fig, ax = _pyplot().subplots(figsize=(5.2, 4.2))
    _draw_roc(ax, curves, title or "ROC")
    return _save_figure(fig, Path(path))


def plot_cmc(curves: Mapping[str, Any], path: str | Path, title: str = "", chance: float | None = None) -> Path:
    """CMC of one or several models: ``{label: identification rate at rank 1..K}``; ``chance`` (1 / gallery
    size) draws rank x chance dashed."""
    fig, ax = _pyplot().subplots(figsize=(5.2, 4.2))
    k = 1
    for label, rates in curves.items():
        rates = np.asarray(rates, float)
        k = max(k, len(rates))
        ax.plot(np.arange(1, len(rates) + 1), rates, marker="o", ms=3, lw=1.5, label=label)
    if chance is not None:
        ranks = np.arange(1, k + 1)
        ax.plot(ranks, np.minimum(1.0, ranks * chance), "k--", lw=0.8, label="chance")
    ax.set_xlim(1, max(k, 2))
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate")
    ax.set_title(title or "CMC")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    return _save_figure(fig, Path(path))


def _plot(name: str, fpr: np.ndarray, tpr: np.ndarray, path: Path) -> None:
    """The evaluation report's picture: ROC (as :func:`plot_roc`) and DET side by side."""
    fig, (ax1, ax2) = _pyplot().subplots(1, 2, figsize=(10, 4.2))
    _draw_roc(ax1, {name: (fpr, tpr)}, f"ROC — {name}")
    fnr = 1 - tpr
    ok = (fpr > 0) & (fnr > 0)
    ax2.plot(fpr[ok], fnr[ok], lw=1.5, color="C1")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("FAR")
    ax2.set_ylabel("FRR (false reject rate)")
    ax2.set_title(f"DET — {name}")
    ax2.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    _save_figure(fig, path)


def plot_image_pairs(
    groups: Mapping[str, tuple[Any, Any]],
    path: str | Path,
    names: tuple[str, str] = ("NIR", "VIS"),
    per_row: int = 4,
    inches: float = 1.15,
    title: str = "",
) -> Path:
    """Image pairs drawn large: per identity its two images side by side (``names``), ``per_row``
    identities per row; each group (e.g. generated, real) starts a new row. Images ``[N, 3|1, H, W]`` in [0, 1]."""
    plt = _pyplot()
    rows: list[tuple[str, int, Any, Any]] = []
    for group, (a, b) in groups.items():
        n = min(len(a), len(b))
        for start in range(0, n, per_row):
            rows.append((group, start, a[start : start + per_row], b[start : start + per_row]))
    if not rows:
        raise ValueError("plot_image_pairs: no images")
    fig, axes = plt.subplots(
        len(rows), 2 * per_row, figsize=(2 * per_row * inches, len(rows) * (inches + 0.25)), squeeze=False
    )
    for r, (group, start, a, b) in enumerate(rows):
        for j in range(per_row):
            for side, (images, name) in enumerate(((a, names[0]), (b, names[1]))):
                ax = axes[r][2 * j + side]
                ax.axis("off")
                if j < len(images):
                    img = images[j].detach().float().clamp(0, 1).cpu()
                    img = img.expand(3, -1, -1) if img.shape[0] == 1 else img
                    ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
                    ax.set_title(f"{group} {start + j + 1} {name}" if side == 0 else name, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save_figure(fig, Path(path))


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_report(
    out: str | Path,
    results: Mapping[str, EvalResult],
    info: Mapping[str, Any] | None = None,
    *,
    plots: bool | None = None,
) -> dict[str, Any]:
    """Write the report files into ``out``; returns {"files": [...], "messages": [...]}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    messages: list[str] = []
    plots = have_matplotlib() if plots is None else plots
    if not plots:
        messages.append("matplotlib is not installed (pip install matplotlib): ROC/DET curves written as CSV only")
    payload = {
        "info": _jsonable(dict(info or {})),
        "protocols": {
            n: {"metrics": _jsonable(dict(r.metrics)), "convention": r.convention} for n, r in results.items()
        },
    }
    files.append(_atomic_write(out / "metrics.json", json.dumps(payload, indent=2) + "\n"))
    files.append(_atomic_write(out / "summary.md", markdown_summary(results, info)))
    for name, res in results.items():
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        art = res.artefacts
        if "fold_accuracy" in art:
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["fold", "accuracy", "threshold"])
            for i, (a, t) in enumerate(zip(art["fold_accuracy"], art.get("fold_threshold", []))):
                w.writerow([i + 1, repr(float(a)), repr(float(t))])
            files.append(_atomic_write(out / f"{safe}_folds.csv", buf.getvalue()))
        if "per_fold" in art:
            rows = art["per_fold"]
            cols = list(dict.fromkeys(k for r in rows for k in r))
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["fold", *cols])
            for i, r in enumerate(rows):
                w.writerow([i + 1, *(repr(float(r[c])) if c in r else "" for c in cols)])
            files.append(_atomic_write(out / f"{safe}_folds.csv", buf.getvalue()))
        roc = art.get("roc")
        if roc is not None:
            fpr, tpr = np.asarray(roc["fpr"], float), np.asarray(roc["tpr"], float)
            thr = np.asarray(roc.get("thresholds"), float) if roc.get("thresholds") is not None else None
            files.append(_atomic_write(out / f"{safe}_roc.csv", _curve_csv(fpr, tpr, thr)))
            if plots:
                _plot(name, fpr, tpr, out / f"{safe}_roc.png")
                files.append(out / f"{safe}_roc.png")
    return {"files": [str(f) for f in files], "messages": messages}


__all__ = [
    "RANDOM_INIT",
    "have_matplotlib",
    "markdown_summary",
    "plot_cmc",
    "plot_image_pairs",
    "plot_roc",
    "random_weights_warning",
    "roc_points",
    "write_report",
]
