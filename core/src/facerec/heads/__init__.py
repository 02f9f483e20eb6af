"""Classification heads (registered under ``facerec.heads``): margin heads and Partial FC."""

from .margin import ArcFaceHead, CombinedMarginHead, CosFaceHead, MarginHead, NormSoftmaxHead, SoftmaxHead
from .partial_fc import PartialFCHead

__all__ = [
    "ArcFaceHead",
    "CombinedMarginHead",
    "CosFaceHead",
    "MarginHead",
    "NormSoftmaxHead",
    "PartialFCHead",
    "SoftmaxHead",
]
