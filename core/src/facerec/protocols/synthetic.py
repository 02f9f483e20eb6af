"""Evaluation protocols on synthetic identities (disjoint from training ids), rendered on the fly.

* ``synthetic-pairs``: LFW-like verification, 10 folds x 600 pairs (300 same + 300 different).
* ``synthetic-pose-pairs``: CFP-FP-like, a near-frontal image against a profile (65-90 degrees yaw).
* ``synthetic-nir-vis``: CASIA NIR-VIS 2.0-like, one VIS gallery image per id, NIR probes; rank-1 and
  VR@FAR 1e-2 / 1e-3 over all gallery x probe scores.
* ``synthetic-lowres``: SCface-like, HR frontal gallery against probes degraded to 8/12/16/20 px;
  rank-1 and HR-vs-LR verification accuracy per resolution (plus full-resolution probes as reference).

Every protocol takes ``nuisance`` (a preset name such as ``"controlled"``, or a dict of
:class:`~facerec.data.synthetic.Nuisance` fields): how hard the per-sample variation of its images is.

Items are named by key strings (``"<identity>/<sample>"``, ``"nir:"`` before NIR items, ``"@<r>px"`` after
degraded ones); ``evaluate_features`` scores precomputed features given under those keys (``keys`` lists
them, ``images(i)`` renders them).

The shared machinery is in synthetic_base.py, the verification protocols in synthetic_pairs.py, the
identification ones in synthetic_identification.py; every protocol is importable from here.
"""

from __future__ import annotations

from .synthetic_identification import SyntheticLowResProtocol, SyntheticNirVisProtocol
from .synthetic_pairs import SyntheticPairs, SyntheticPosePairs

__all__ = ["SyntheticPairs", "SyntheticPosePairs", "SyntheticNirVisProtocol", "SyntheticLowResProtocol"]
