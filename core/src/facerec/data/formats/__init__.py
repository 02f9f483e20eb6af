"""Real dataset formats: image lists, image folders and LMDB in the Vec2Face/HSFace layout.

Every dataset yields canonical samples (``image`` float ``[3,H,W]`` RGB in [0,1], ``label``, and
``modality``/``feature`` where the source has them), gives ``labels`` without decoding any image,
and exposes ``read_raw(i)`` (the stored image bytes) so converters copy JPEGs without re-encoding.
``template`` names the alignment template the images are aligned to (None: not declared); an LMDB
written by ``facerun data align`` declares it in its ``__template__`` record.
Corrupt or missing images raise :class:`DataError` naming the path or LMDB key; with
``skip_corrupt=True`` the next good sample is returned instead and ``skipped`` counts the bad ones.
"""

from .detection import detect_format, open_dataset
from .lists import ALIGN_SIDECAR, MAX_LABEL, ImageFolder, ImageList, folder_template  # noqa: F401
from .lmdb_dataset import (  # noqa: F401 - the LMDB layout's names, imported from here by writers and tests
    LABELS_KEY,
    MODALITY_KEY,
    TEMPLATE_KEY,
    LMDBDataset,
    close_reader,
    decode_feature,
    open_lmdb,
    record_label,
    shared_reader,
    unpack_record,
)
from .modality import ModalityRule


__all__ = ["ImageList", "ImageFolder", "LMDBDataset", "ModalityRule", "detect_format", "open_dataset"]
