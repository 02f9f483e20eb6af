"""Face detection for raw photos: MTCNN, core's built-in :class:`~facerec.api.Detector`.

``nets`` (P-, R-, O-Net), ``stages`` (pyramid and the cascade), ``nms``, ``patches`` (area-resized
box patches), ``released`` (the released weights: reading, conversion, card), ``mtcnn`` (the detector).
"""

from .mtcnn import MTCNN

__all__ = ["MTCNN"]
