"""Dataset formats, the synthetic face renderer, transforms and alignment (import submodules directly).

Public submodules (``__all__``): ``formats`` (image list / folder / LMDB readers, :func:`open_dataset`),
``sources`` (a dataset on disk with each sample's key, its images in batches), ``writers``, ``decode``,
``transforms``, ``align`` (templates and warping), ``synthetic`` (the face renderer), ``cache``, ``grid``."""

__all__ = ["align", "cache", "decode", "formats", "grid", "sources", "synthetic", "transforms", "writers"]
