"""Weight cards of the released LightCNN checkpoints that DVG / DVG-Face start from.

The files are Google-Drive downloads that cannot be fetched non-interactively and whose hashes are
not published: download them by hand and load them with ``facerec.load_weights`` (the converter
strips ``module.`` and drops the classifier), or ``facerun weights convert``.
"""

from __future__ import annotations

from facerec.api import InputSpec
from facerec.weights import WeightCard, WeightFile

_SPEC = InputSpec(size=128, color="GRAY", resize=144, template="lightcnn144")


def lightcnn29_v2() -> WeightCard:
    """LightCNN-29 v2 released checkpoint (MS-Celeb-1M), the starting point of DVG-Face; manual download."""
    return WeightCard(
        name="lightcnn29-v2",
        arch="lightcnn29",
        format="original",
        input_spec=_SPEC,
        files=[
            WeightFile(
                filename="LightCNN_29Layers_V2_checkpoint.pth.tar",
                url="https://drive.google.com/file/d/1Jn6aXtQ84WY-7J3Tpr2_j6sX0ch9yucS/view",
            )
        ],
        licence="research use; see AlfredXiangWu/LightCNN",
        metrics={
            "LFW 100%-EER": 99.43,
            "LFW TPR@FAR=1%": 99.53,
            "LFW TPR@FAR=0.1%": 99.30,
            "BLUFR VR@FAR=0.1%": 99.41,
            "MegaFace rank-1": 76.021,
        },
        origin="AlfredXiangWu/LightCNN (MS-Celeb-1M + CASIA-WebFace, 80013 classes); the model DVG-Face fine-tunes",
    )


def lightcnn9() -> WeightCard:
    """LightCNN-9 released checkpoint (upstream LightCNN); manual download."""
    return WeightCard(
        name="lightcnn9",
        arch="lightcnn9",
        format="original",
        input_spec=_SPEC,
        files=[WeightFile(filename="LightCNN_9Layers_checkpoint.pth.tar")],
        licence="research use; see AlfredXiangWu/LightCNN",
        origin="AlfredXiangWu/LightCNN (manual download, link in its README)",
    )
