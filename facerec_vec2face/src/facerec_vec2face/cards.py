"""Weight cards for the files released with Vec2Face (Hugging Face ``BooBooWu/Vec2Face``).

sha256 values are empty: the files could not be fetched when these cards were written, so
``facerun weights pull`` downloads them unverified. Licences are as stated by the upstream
projects; check the model card before any use beyond research.
"""

from __future__ import annotations

from facerec.api import InputSpec
from facerec.weights import WeightCard, WeightFile

REPO = "BooBooWu/Vec2Face"
ORIGIN = "Vec2Face (Wu et al., ICLR 2025), https://huggingface.co/BooBooWu/Vec2Face"
FR_SPEC = InputSpec(size=112, color="RGB", mean=0.5, std=0.5)
LICENCE_V2F = "unverified: see the Hugging Face model card of BooBooWu/Vec2Face (research use)"
LICENCE_INSIGHTFACE = (
    "insightface models: non-commercial research purposes only (insightface model licence); "
    "redistributed by BooBooWu/Vec2Face"
)


def _file(path: str) -> WeightFile:
    return WeightFile(filename=path.rsplit("/", 1)[-1], hf_repo=REPO, hf_filename=path)


VEC2FACE_GENERATOR = WeightCard(
    name="vec2face-generator",
    arch="vec2face",
    arch_kind="generator",
    files=[_file("weights/vec2face_generator.pth")],
    licence=LICENCE_V2F,
    origin=ORIGIN + " (checkpoint['model_vec2face'], ViT base patch 16, trained on WebFace4M)",
    format="original",
    params={"config": "base"},
)
ARCFACE_R100_GLINT360K = WeightCard(
    name="arcface-r100-glint360k",
    arch="iresnet100",
    files=[_file("weights/arcface-r100-glint360k.pth")],
    licence=LICENCE_INSIGHTFACE,
    input_spec=FR_SPEC,
    format="original",
    origin=ORIGIN + " (identity loss / feature extractor; plain state dict)",
    metrics={"LFW": 99.82, "CFP-FP": 99.07, "CPLFW": 94.68, "AgeDB-30": 98.30, "CALFW": 96.15},
)
MAGFACE_R100_GLINT360K = WeightCard(
    name="magface-r100-glint360k",
    arch="iresnet100",
    files=[_file("weights/magface-r100-glint360k.pth")],
    licence=LICENCE_INSIGHTFACE,
    input_spec=FR_SPEC,
    format="original",
    origin=ORIGIN + " (quality estimator: embedding L2 norm; plain state dict)",
)
SIXDREPNET = WeightCard(
    name="sixdrepnet-300wlp",
    arch="sixdrepnet",
    arch_kind="estimator",
    files=[_file("weights/6DRepNet_300W_LP_AFLW2000.pth")],
    licence="MIT (thohemp/6DRepNet)",
    format="original",
    origin="6DRepNet (Hempel et al., ICIP 2022) RepVGG-B1g2 deploy form, trained on 300W-LP; via " + ORIGIN,
)


def _hsface(ids: str, metrics: dict[str, float]) -> WeightCard:
    return WeightCard(
        name=f"hsface{ids}-r50se",
        arch="iresnet50-se",
        files=[_file(f"fr_weights/hsface{ids}.pth")],
        licence=LICENCE_V2F,
        input_spec=FR_SPEC,
        format="original",
        metrics=metrics,
        origin=ORIGIN + f" (ArcFace IResNet-50-SE trained on HSFace{ids.upper()} with SOTA-FR; published 10-fold %)",
    )


HSFACE10K = _hsface("10k", {"LFW": 98.87, "CFP-FP": 88.97, "CPLFW": 85.47, "AgeDB-30": 93.12, "CALFW": 93.57})
HSFACE20K = _hsface("20k", {"LFW": 98.87, "CFP-FP": 89.87, "CPLFW": 86.13, "AgeDB-30": 93.85, "CALFW": 93.65})
HSFACE100K = _hsface("100k", {"LFW": 99.25, "CFP-FP": 90.36, "CPLFW": 86.75, "AgeDB-30": 94.38, "CALFW": 94.12})
HSFACE200K = _hsface("200k", {"LFW": 99.23, "CFP-FP": 90.81, "CPLFW": 87.30, "AgeDB-30": 94.22, "CALFW": 94.52})
