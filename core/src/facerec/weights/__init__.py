"""Pretrained weights: cards, safe readers, strict loading, safetensors export, Hugging Face pull.

* A :class:`WeightCard` describes one set of weights (architecture, files with sha256, licence,
  input spec, published metrics, origin). Plugins register cards through the ``facerec.weights``
  entry-point group (the target is a card, or a function returning one). (``catalog``)
* A :class:`WeightFormat` reads one kind of weight file. Formats are components of kind
  ``weight-format`` (group ``facerec.weight_formats``): core registers safetensors, torch
  (``torch.load(weights_only=True)``), pickle (a restricted unpickler for VGGFace2-style latin-1
  ``.pkl`` files that admits numpy arrays and plain containers only) and npz; a plugin registers a
  reader for its own (dlib's ``.dat``), and :func:`load_weights`, ``--weights`` and ``facerun weights
  convert`` use it. No file can execute code. (``formats``, ``readers``)
* :func:`load_weights` loads safetensors strictly, or reads a paper's original file through its
  format and converts it with ``type(model).convert_checkpoint`` before the strict load. (``loading``;
  ``conversion`` writes converted files)
* :func:`pull` fetches a card's files through ``huggingface_hub`` (standard cache, honours
  ``HF_HUB_OFFLINE``) and verifies their sha256; :func:`resolve_weights` turns a ``--weights`` value
  into a file. (``fetch``)
* :func:`create_with_weights` builds a component and loads a card or file in one step. (``create``)

The submodules are internal: import every name from ``facerec.weights``.
"""

from .catalog import FORMATS, WeightCard, WeightFile, card, cards  # noqa: F401  (FORMATS: as before)
from .conversion import build_model, convert, model_from_weights
from .create import card_params, create_with_weights
from .fetch import ResolvedWeights, package_file, pull, resolve, resolve_weights

# core's built-in formats: core/pyproject.toml registers them as facerec.weights:SAFETENSORS etc.
from .formats import NPZ, PICKLE, SAFETENSORS, TORCH  # noqa: F401
from .formats import WeightFormat, format_of, read_checkpoint, weight_formats
from .loading import load_weights, read_metadata, save_weights, sha256, strict_load
from .readers import read_pickle

__all__ = [
    "WeightCard",
    "WeightFile",
    "WeightFormat",
    "ResolvedWeights",
    "card",
    "cards",
    "read_checkpoint",
    "read_pickle",
    "load_weights",
    "strict_load",
    "save_weights",
    "read_metadata",
    "convert",
    "pull",
    "resolve",
    "resolve_weights",
    "package_file",
    "weight_formats",
    "format_of",
    "sha256",
    "build_model",
    "model_from_weights",
    "card_params",
    "create_with_weights",
]
