"""Evaluation protocols: pairs, identification, IJB templates and the synthetic ones (import submodules directly).

Public submodules (``__all__``): ``pairs``, ``identification``, ``ijb`` and ``common`` (embedding images and
feature files, what protocols in plugins build on)."""

__all__ = ["common", "identification", "ijb", "pairs"]
