"""dlib's face chip as a facerec alignment template (``dlib150``).

dlib crops a face with ``get_face_chip_details(shape, size=150, padding=0.25)`` (what
``face_recognition_model_v1.compute_face_descriptor`` does): a similarity transform that puts dlib's
reference face, given in a unit square, at ``(padding + p) / (1 + 2 * padding)`` of the chip. The chip
is then rendered with the unit square's corners on the centres of the chip's corner pixels
(``get_mapping_to_chip``: top-left -> pixel 0, top-right -> pixel ``size - 1``), so in pixel coordinates
(centres at integers) a reference point lands at ``(padding + p) / (1 + 2 * padding) * (size - 1)``
(exactly for faces larger than the chip; within 0.5 px down to a face of the chip's own size).
facerec's templates name 5 other landmarks (eye centres, nose tip, mouth corners), so they are taken
from the same function's references:

* eye centres: midpoints of the eye corners of dlib's 5-point reference (the 5-point shape predictor's
  points 0-1 and 2-3);
* nose tip and mouth corners: points 30, 48 and 54 of the 68-point mean face that
  ``get_face_chip_details`` uses for 68-point shapes (the 5-point reference is consistent with it: its
  eye corners and nose bottom are that mean face's points 36, 39, 42, 45 and 33).
"""

from __future__ import annotations

import numpy as np

from facerec.data.align import Template

PADDING = 0.25
SIZE = 150

# dlib's references in its unit square (image left to right: subject's right eye first)
_EYE_CORNERS_5PT = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
    ]
)
_NOSE_TIP_68 = (0.490127, 0.515625)  # mean face point 30
_MOUTH_CORNERS_68 = ((0.254149, 0.780233), (0.726104, 0.780233))  # mean face points 48, 54


def chip_position(unit: np.ndarray, padding: float = PADDING, size: int = SIZE) -> np.ndarray:
    """Pixel position in dlib's chip of points of its reference face (unit square)."""
    return (padding + np.asarray(unit, dtype=np.float64)) / (1 + 2 * padding) * (size - 1)


def reference_points(padding: float = PADDING, size: int = SIZE) -> np.ndarray:
    """The 5 landmarks (facerec's order) of dlib's chip of ``size`` px with ``padding``."""
    unit = np.array(
        [
            _EYE_CORNERS_5PT[2:4].mean(0),  # left eye in the image (the subject's right eye)
            _EYE_CORNERS_5PT[0:2].mean(0),
            _NOSE_TIP_68,
            *_MOUTH_CORNERS_68,
        ]
    )
    return chip_position(unit, padding, size)


DLIB150 = Template(
    "dlib150",
    SIZE,
    reference_points(),
    origin=("dlib's 150x150 face chip (get_face_chip_details, padding 0.25), as compute_face_descriptor crops"),
)
