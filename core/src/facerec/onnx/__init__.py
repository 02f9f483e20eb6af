"""ONNX interop: export a backbone to an ``.onnx`` file checked against PyTorch (:mod:`.export`), and run
such a file as a backbone for any protocol (:mod:`.embedder`). Internal: reached through ``facerun export``
and ``facerun extract/eval --backbone FILE.onnx``; onnx and onnxruntime are optional (``facerec-core[onnx]``)."""
