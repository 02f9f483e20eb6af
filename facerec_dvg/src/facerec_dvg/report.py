"""What the DVG recipe shows: per-model NIR-VIS scores with bootstrap errors, the console headline,
summary.md's sections (comparison with chance, the generated-identity check, pictures), and the pictures.

Scores come from protocols that expose their probe x gallery score matrix and image plan (the
synthetic NIR-VIS protocol); other protocols (CASIA's ten folds) report their own metrics and fold std.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import stats

#: The arms in report order and how the report names them.
ARMS = {"face-model": "face model", "without": "without generated pairs", "with": "with generated pairs"}
FAR = 1e-2


def protocol_probe_scores(proto: Any, artefacts: Mapping[str, Any]) -> stats.ProbeScores | None:
    """Probe scores from a protocol whose artefacts hold the probe x gallery ``scores`` and whose plan
    lists the gallery first (``num_ids`` items), then the probes; None for any other protocol."""
    scores, plan, n = artefacts.get("scores"), getattr(proto, "plan", None), getattr(proto, "num_ids", None)
    if scores is None or plan is None or n is None:
        return None
    ids = torch.as_tensor(plan["identity"])
    scores = np.asarray(scores)
    if scores.shape != (len(ids) - n, n):
        return None
    return stats.probe_scores(scores, ids[n:], ids[:n])


@attrs.define
class Comparison:
    """Every arm's probe scores (one entry per fine-tuning seed) on one NIR-VIS protocol."""

    protocol: str
    runs: dict[str, list[stats.ProbeScores]]
    gallery_size: int
    vis_control: dict[str, stats.ProbeScores] = attrs.field(factory=dict)  # VIS probes of the same faces

    @property
    def num_probes(self) -> int:
        return next(iter(self.runs.values()))[0].num_probes

    @property
    def chance_rank1(self) -> float:
        return 1.0 / self.gallery_size

    def estimates(self) -> dict[str, dict[str, stats.Estimate]]:
        return stats.bootstrap_metrics(self.runs, far=FAR)

    def difference(self) -> stats.Estimate:
        return stats.paired_difference(self.runs["with"], self.runs["without"])

    def per_seed(self) -> dict[str, list[float]]:
        return {arm: [float((r.rank == 0).float().mean()) for r in runs] for arm, runs in self.runs.items()}

    def metrics(self) -> dict[str, float]:
        """Flat numbers for metrics.json (``<protocol>/<arm>/rank1``, ``.../rank1_se`` ...)."""
        out: dict[str, float] = {}
        p = self.protocol
        for arm, est in self.estimates().items():
            for key, name in (("rank1", "rank1"), ("vr", "vr@far=1e-2")):
                e = est[key]
                out[f"{arm}/{p}/{name}"] = e.value
                out[f"{arm}/{p}/{name}_se"] = e.se
            seeds = self.per_seed()[arm]
            if len(seeds) > 1:
                out[f"{arm}/{p}/rank1_seed_std"] = float(np.std(seeds, ddof=1))
        for arm, ps in self.vis_control.items():
            out[f"{arm}/{p}/vis-vis-rank1"] = float((ps.rank == 0).float().mean())
        d = self.difference()
        out.update(
            {
                f"with-minus-without/{p}/rank1": d.value,
                f"with-minus-without/{p}/rank1_se": d.se,
                f"with-minus-without/{p}/rank1_low95": d.low,
                f"with-minus-without/{p}/rank1_high95": d.high,
                f"{p}/chance_rank1": self.chance_rank1,
                f"{p}/probes": float(self.num_probes),
                f"{p}/gallery": float(self.gallery_size),
            }
        )
        return out


def verdict(d: stats.Estimate) -> str:
    z = d.value / d.se if d.se > 0 else math.inf if d.value > 0 else -math.inf if d.value < 0 else 0.0
    if z >= 2:
        word = "generated pairs HELP"
    elif z <= -2:
        word = "generated pairs HURT"
    else:
        word = "no clear difference"
    return f"{word}: with - without = {d.value:+.3f} rank-1 (95% interval {d.low:+.3f} .. {d.high:+.3f}, {z:+.1f} SE)"


def _pm(e: stats.Estimate) -> str:
    return f"{e.value:.3f} ± {e.se:.3f}"


def headline(c: Comparison, seeds: int) -> str:
    """The few lines the run ends with."""
    est = c.estimates()
    per_seed = c.per_seed()
    lines = [
        f"DVG-Face on {c.protocol}: NIR probes vs VIS gallery, {c.num_probes} probes of {c.gallery_size} "
        f"held-out identities (± = bootstrap SE over probes"
        + (f"; mean of {seeds} fine-tuning seeds" if seeds > 1 else "")
        + ")"
    ]
    width = max(len(v) for v in ARMS.values())
    for arm, name in ARMS.items():
        if arm not in est:
            continue
        extra = ""
        if len(per_seed[arm]) > 1:
            extra = f"   seeds: rank-1 {np.mean(per_seed[arm]):.3f} ± {np.std(per_seed[arm], ddof=1):.3f} (std)"
        lines.append(f"  {name:<{width}}  rank-1 {_pm(est[arm]['rank1'])}   VR@FAR=1e-2 {_pm(est[arm]['vr'])}{extra}")
    lines.append(f"  chance: rank-1 {c.chance_rank1:.3f}, VR@FAR=1e-2 0.010")
    lines.append(verdict(c.difference()))
    return "\n".join(lines)


def comparison_rows(c: Comparison) -> list[dict[str, Any]]:
    est = c.estimates()
    per_seed = c.per_seed()
    rows = []
    for arm, name in ARMS.items():
        if arm not in est:
            continue
        row: dict[str, Any] = {
            "model": name,
            "NIR-VIS rank-1": _pm(est[arm]["rank1"]),
            "rank-1 95% interval": f"{est[arm]['rank1'].low:.3f} .. {est[arm]['rank1'].high:.3f}",
            "VR@FAR=1e-2": _pm(est[arm]["vr"]),
        }
        if arm in c.vis_control:
            row["VIS-VIS rank-1"] = f"{float((c.vis_control[arm].rank == 0).float().mean()):.3f}"
        if len(per_seed[arm]) > 1:
            row["rank-1 per seed"] = ", ".join(f"{v:.3f}" for v in per_seed[arm])
        rows.append(row)
    rows.append(
        {
            "model": "chance",
            "NIR-VIS rank-1": f"{c.chance_rank1:.3f}",
            "rank-1 95% interval": "",
            "VR@FAR=1e-2": f"{FAR:.3f}",
        }
    )
    return rows


# ------------------------------------------------------------------------------ generated identities
@torch.no_grad()
def identity_check(
    face: Any, generated: tuple[Tensor, Tensor], real: tuple[Tensor, Tensor] | None, device: str
) -> list[dict[str, Any]]:
    """Face-model cosine between the NIR and the VIS image of ONE identity against that between
    DIFFERENT identities, for generated pairs (and real pairs, as the reference)."""
    net = face.module if hasattr(face, "module") else face
    was = net.training
    net.eval()

    def embed(x: Tensor) -> Tensor:
        parts = [
            F.normalize(net(net.input_spec.prepare(x[i : i + 128].to(device))).float(), dim=1).cpu()
            for i in range(0, len(x), 128)
        ]
        return torch.cat(parts)

    rows = []
    for name, pair in (("generated pairs", generated), ("real pairs (paired training set)", real)):
        if pair is None or len(pair[0]) < 2:
            continue
        n = min(len(pair[0]), 512)
        c = embed(pair[0][:n]) @ embed(pair[1][:n]).T
        same = c.diag()
        off = c[~torch.eye(n, dtype=torch.bool)]
        rank1 = float((c.argmax(1) == torch.arange(n)).float().mean())
        rows.append(
            {
                "pairs": name,
                "n": n,
                "same identity NIR-VIS cosine": f"{same.mean():.3f} ± {same.std():.3f}",
                "different identities": f"{off.mean():.3f} ± {off.std():.3f}",
                "same > every different (rank-1 of NIR among VIS)": f"{rank1:.3f}",
            }
        )
    net.train(was)
    return rows


# ------------------------------------------------------------------------------ pictures
def draw_pictures(
    run_dir: Path, c: Comparison | None, generated: tuple[Tensor, Tensor], real: tuple[Tensor, Tensor] | None
) -> tuple[list[str], list[str]]:
    """CMC, ROC (three models, chance) and the generated pairs beside real ones; returns (written
    picture paths relative to the run, messages about pictures that could not be drawn)."""
    from facerec import reports

    if not reports.have_matplotlib():
        return [], ["matplotlib is missing (a dependency of facerec-core: pip install matplotlib): no pictures drawn"]
    written = []
    if c is not None:
        names = {ARMS[a]: runs[0] for a, runs in c.runs.items()}  # the first seed's run
        reports.plot_cmc(
            {n: stats.cmc(ps, 20) for n, ps in names.items()},
            run_dir / "pictures/cmc.png",
            title=f"CMC, NIR probes vs VIS gallery ({c.gallery_size} ids)",
            chance=c.chance_rank1,
        )
        reports.plot_roc(
            {n: stats.roc_curve(ps) for n, ps in names.items()},
            run_dir / "pictures/roc.png",
            title="ROC, NIR probes vs VIS gallery (all pairs)",
        )
        written += ["pictures/cmc.png", "pictures/roc.png"]
    groups = {"generated": (generated[0][:8], generated[1][:8])}
    if real is not None:
        groups["real"] = (real[0][:4], real[1][:4])
    reports.plot_image_pairs(
        groups,
        run_dir / "pictures/generated_pairs.png",
        title="generated NIR/VIS pairs of new identities (one identity per pair), real pairs of the training set below",
    )
    written.append("pictures/generated_pairs.png")
    return written, []


def pictures_section(pictures: Sequence[str], messages: Sequence[str]) -> str:
    captions = {
        "pictures/cmc.png": "CMC of the face model and the two fine-tunings (first seed), chance dashed",
        "pictures/roc.png": "ROC (VR against FAR) of the three models, chance dashed",
        "pictures/generated_pairs.png": "generated NIR/VIS pairs (one new identity each) beside real pairs",
    }
    lines = [f"- {captions.get(p, p)}: `{p}`\n\n  ![{p}]({p})" for p in pictures]
    lines += [f"- {m}" for m in messages]
    return "\n".join(lines) if lines else "(none)"
