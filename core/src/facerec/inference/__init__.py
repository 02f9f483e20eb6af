"""Batched embedding of canonical images with any backbone or embedder (inference mode), and the fast
inference path: :func:`optimize_for_inference` folds eval-mode BatchNorm into the preceding conv /
linear layer (and any per-channel affine layer that follows a convolution, however it is written) and
switches conv nets to channels-last (most of the gain over eager), optionally compiles the forward with
``torch.compile`` and runs it in bf16/fp16, and verifies the result against the model's float64 forward
before using it; otherwise a more exact setting, and finally the eager model, is kept.

Embedding is in embedding.py, BatchNorm folding in folding.py. The fast path itself stays in this module:
it looks up ``fold_batchnorm`` and ``LOW_PRECISION_MIN_COSINE`` here, where callers and tests replace them.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..api import Backbone
from .embedding import _padded, as_embedder, embed_batches, embed_tensor
from .folding import channel_affine as channel_affine
from .folding import fold_batchnorm

#: Largest allowed deviation of the optimised model from the eager forward (relative to max |out|).
TOLERANCE = 1e-4


def _has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _sample_input(model: nn.Module, batch: int = 2) -> Tensor | None:
    spec = getattr(model, "input_spec", None)
    if spec is None:
        return None
    gen = torch.Generator().manual_seed(0)
    h, w = spec.canonical_size, spec.canonical_size
    return torch.rand(batch, 3, h, w, generator=gen)


Precision = Literal["fp32", "bf16", "fp16"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

#: Low precision is judged by what recognition uses: every embedding's cosine to the float64 one.
LOW_PRECISION_MIN_COSINE = 0.999


def low_precision_support(device: str, precision: Precision) -> str | None:
    """None when ``precision`` runs natively on ``device``, else why it would be slow or impossible."""
    if precision == "fp32":
        return None
    dev = torch.device(device)
    if dev.type == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            return f"{torch.cuda.get_device_name(dev)} has no bf16 arithmetic"
        return None
    if precision == "fp16":
        return "fp16 on the CPU is emulated (use bf16 on CPUs with AMX / AVX-512-BF16)"
    if not torch.backends.mkldnn.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "this CPU has no native bf16 (AVX-512-BF16 or AMX): bf16 runs emulated, slower than fp32"
    return None


def optimize_for_inference(
    model: nn.Module,
    *,
    device: str = "cpu",
    channels_last: bool | None = None,
    check: bool = True,
    example: Tensor | None = None,
    compile: bool = False,
    precision: Precision = "fp32",
    batch_size: int = 32,
) -> nn.Module:
    """A faster eval-mode copy of ``model`` (Backbone class and ``embed`` kept): BatchNorm folded into the
    convolution or linear layer before it, channels-last for conv nets, frozen parameters; with
    ``compile`` its forward compiled by ``torch.compile`` (inductor, weights frozen as constants, static
    batches of ``batch_size``: :func:`embed_batches` pads the last one); with ``precision`` bf16/fp16 its
    forward under autocast.

    The result is checked on ``example`` (default: random canonical images at the input spec's size)
    against the model's float64 forward: fp32 within 1e-4 relative to the largest output, or twice the
    eager fp32 forward's own error for badly conditioned nets; bf16/fp16 by every embedding's cosine to
    the float64 one (>= 0.999). A candidate that fails falls back, with a warning saying why, to the next:
    low precision -> fp32, compiled -> plain folded, and finally the eager model.
    """
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
    why = low_precision_support(device, precision)
    if why is not None:
        warnings.warn(f"--precision {precision}: {why}", stacklevel=2)
    eager = model
    try:
        fast, _ = fold_batchnorm(model)
    except Exception as exc:  # never fail evaluation because an optimisation does not apply
        warnings.warn(f"optimize_for_inference: BatchNorm folding skipped ({type(exc).__name__}: {exc})", stacklevel=2)
        fast = copy.deepcopy(model).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    if channels_last is None:
        channels_last = _has_conv2d(fast)
    fast = fast.to(device)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    plans = [
        (c, pr)
        for c in ((True, False) if compile else (False,))
        for pr in ((precision, "fp32") if precision != "fp32" else ("fp32",))
    ]
    if not check:
        return _build(fast, *plans[0], device, batch_size, None)
    images = example if example is not None else _sample_input(model, batch_size if compile else 2)
    if images is None:
        return _build(fast, *plans[0], device, batch_size, None)
    was = eager.training
    eager.eval()
    diff = "not checked"
    try:
        ref = copy.deepcopy(eager).to(device)
        images = images.to(device)
        with torch.inference_mode():
            expected = as_embedder(ref)(images).float()
        exact = float64_output(ref, images, in_place=True)  # ref is a throw-away copy
        if exact is None:
            target, bound = expected, TOLERANCE
        else:  # a badly conditioned net's own fp32 forward can be off by more than 1e-4 already
            target, bound = exact, max(TOLERANCE, 2 * relative_error(expected, exact))
        for i, (compiled, prec) in enumerate(plans):
            candidate = _build(
                fast if i == len(plans) - 1 else copy.deepcopy(fast), compiled, prec, device, batch_size, images
            )
            with torch.inference_mode():
                got = as_embedder(candidate)(images).float()
            ok, diff = _accurate(got, target, bound, prec)
            if ok:
                return candidate
            warnings.warn(
                f"optimize_for_inference: {'compiled ' if compiled else ''}{prec} forward differs "
                f"({diff}); trying a more exact setting",
                stacklevel=2,
            )
    except Exception as exc:
        warnings.warn(
            f"optimize_for_inference: check failed ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); using the eager model",
            stacklevel=2,
        )
        return eager.eval().to(device)
    finally:
        eager.train(was)
    warnings.warn(f"optimize_for_inference: optimised model differs ({diff}); using the eager model", stacklevel=2)
    return eager.eval().to(device)


def _accurate(got: Tensor, target: Tensor, bound: float, precision: str) -> tuple[bool, str]:
    if precision == "fp32":
        err = relative_error(got, target)
        return err <= bound, f"{err:.2e} > {bound:.1e}"
    if got.shape != target.shape:
        return False, f"shape {tuple(got.shape)} vs {tuple(target.shape)}"
    cos = float(torch.nn.functional.cosine_similarity(got.double(), target.double(), dim=1).min())
    return cos >= LOW_PRECISION_MIN_COSINE, f"least cosine {cos:.5f} < {LOW_PRECISION_MIN_COSINE}"


def _build(
    fast: nn.Module, compiled: bool, precision: str, device: str, batch_size: int, example: Tensor | None
) -> nn.Module:
    """``fast`` with its forward run under autocast (bf16/fp16) and/or compiled; compiled ones are traced
    on ``example`` (or a random batch) now, so the warm-up cost is paid here, once."""
    forward = fast.forward
    if precision != "fp32":
        dtype, device_type, inner = _DTYPES[precision], torch.device(device).type, forward

        def low_precision(*args: Any, **kwargs: Any) -> Any:
            with torch.autocast(device_type, dtype=dtype):
                return inner(*args, **kwargs).float()

        forward = low_precision
    if compiled:
        forward = torch.compile(forward, dynamic=False, options={"freezing": True})
        # static shapes: embed_batches pads short batches to this size. (The ignores: torch's stubs type
        # Module.__setattr__'s value as Tensor | Module, but any value may be set, as here.)
        fast.facerec_batch = batch_size  # type: ignore[assignment]
    fast.forward = forward
    fast.facerec_optimized = True  # type: ignore[assignment]  # embedding helpers use it as it is
    if compiled:
        images = example if example is not None else _sample_input(fast, batch_size)
        if images is not None:
            with torch.inference_mode():
                as_embedder(fast)(_padded(images.to(device), batch_size))
    return fast


def float64_output(model: nn.Module, images: Tensor, *, in_place: bool = False) -> Tensor | None:
    """The Backbone's output computed in float64 (the exact reference for accuracy checks and
    benchmarks), or None where it cannot run so.
    ``in_place`` converts ``model`` itself to float64 instead of a copy."""
    if not isinstance(model, Backbone):
        return None
    try:
        with torch.inference_mode():
            net = model if in_place else copy.deepcopy(model)
            out = net.double()(model.input_spec.prepare(images.double()).double())
    except Exception:  # forwards that cast internally, non-float parameters, ...
        return None
    return out if isinstance(out, Tensor) and out.dtype == torch.float64 else None


def relative_error(got: Tensor, expected: Tensor) -> float:
    """max |got - expected| relative to the largest expected output (at least 1)."""
    if got.shape != expected.shape:
        return float("inf")
    return float((expected.double() - got.double()).abs().max()) / max(float(expected.abs().max()), 1.0)


__all__ = ["as_embedder", "embed_batches", "embed_tensor", "optimize_for_inference", "fold_batchnorm"]
