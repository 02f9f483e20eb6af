"""Weight cards of the four released VGGFace2 models (Caffe models of the VGGFace2 authors, converted to
PyTorch ``*_weight.pkl`` by cydonia999). Published numbers: IJB-B 1:1 verification TAR at FAR 1e-3 / 1e-2
(ox-vgg/vgg_face2 README, centre 224 crop from shorter side 256, 2048-d features)."""

from __future__ import annotations

from facerec.weights import WeightCard, WeightFile

from .models import VGGFACE2_SPEC

_LICENCE = (
    "research use per the VGGFace2 authors (ox-vgg/vgg_face2; the dataset was released under "
    "CC BY-SA 4.0 and later withdrawn by its authors); PyTorch conversion code: MIT (cydonia999)"
)
_REPO = "https://github.com/cydonia999/VGGFace2-pytorch"


def _card(name: str, arch: str, how: str, tar3: float, tar2: float) -> WeightCard:
    return WeightCard(
        name=f"vggface2-{name.replace('_', '-')}",
        arch=f"vggface2-{arch}",
        # The converted .pkl files are linked from the repository README (Google Drive, no stable URL or
        # published hash); download by hand and use `facerun weights convert FILE --arch ...`.
        files=[WeightFile(filename=f"{name}_weight.pkl", url=None)],
        licence=_LICENCE,
        input_spec=VGGFACE2_SPEC,
        format="original",
        metrics={"IJB-B TAR@FAR=1e-3": tar3, "IJB-B TAR@FAR=1e-2": tar2},
        origin=f"{how}; Caffe model by Cao et al. (VGGFace2, FG 2018), converted in {_REPO}",
    )


RESNET50_FT = _card(
    "resnet50_ft", "resnet50", "ResNet-50 pre-trained on MS-Celeb-1M, fine-tuned on VGGFace2", 0.891, 0.947
)
SENET50_FT = _card(
    "senet50_ft", "senet50", "SE-ResNet-50 pre-trained on MS-Celeb-1M, fine-tuned on VGGFace2", 0.908, 0.956
)
RESNET50_SCRATCH = _card("resnet50_scratch", "resnet50", "ResNet-50 trained from scratch on VGGFace2", 0.878, 0.938)
SENET50_SCRATCH = _card("senet50_scratch", "senet50", "SE-ResNet-50 trained from scratch on VGGFace2", 0.888, 0.949)
