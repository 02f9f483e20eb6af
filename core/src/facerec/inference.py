"""Batched embedding of canonical images with any backbone or embedder (inference mode), and the fast
inference path: :func:`optimize_for_inference` folds eval-mode BatchNorm into the preceding conv /
linear layer (and any per-channel affine layer that follows a convolution, however it is written) and
switches conv nets to channels-last (most of the gain over eager), optionally compiles the forward with
``torch.compile`` and runs it in bf16/fp16, and verifies the result against the model's float64 forward
before using it; otherwise a more exact setting, and finally the eager model, is kept.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .api import Backbone, Embedder

#: Largest allowed deviation of the optimised model from the eager forward (relative to max |out|).
TOLERANCE = 1e-4


def as_embedder(model: Backbone | Embedder) -> Embedder:
    """A Backbone embeds through its input spec; any other callable is used as given."""
    return model.embed if isinstance(model, Backbone) else model


@torch.inference_mode()
def embed_batches(
    model: Backbone | Embedder, batches: Iterable[Tensor], *, device: str = "cpu", flip: bool = False
) -> Tensor:
    """Embed canonical image batches ([B,3,H,W] RGB in [0,1]); returns float32 [N, D] on CPU.

    ``flip`` adds the embedding of the mirrored image (the papers' flip test-time augmentation).
    """
    was_training = getattr(model, "training", False)
    if isinstance(model, torch.nn.Module):
        model.eval()
    fn = as_embedder(model)
    fixed = getattr(model, "facerec_batch", None)  # a compiled model runs batches of one size only

    def forward(x: Tensor) -> Tensor:
        if fixed is None:
            return fn(x).float()
        parts = [x[i : i + fixed] for i in range(0, len(x), fixed)]
        return torch.cat([fn(_padded(part, fixed))[: len(part)] for part in parts]).float()

    out = []
    try:
        for images in batches:
            images = images.to(device, non_blocking=True)
            if flip:  # one forward over both halves: better batching than two calls
                both = forward(torch.cat([images, images.flip(-1)]))
                emb = both[: len(images)] + both[len(images) :]
            else:
                emb = forward(images)
            out.append(emb.cpu())
    finally:
        if was_training and isinstance(model, torch.nn.Module):
            model.train()
    return torch.cat(out) if out else torch.empty(0, 0)


def embed_tensor(
    model: Backbone | Embedder, images: Tensor, *, batch_size: int = 64, device: str = "cpu", flip: bool = False
) -> Tensor:
    """Embed an in-memory tensor of canonical images in batches."""
    return embed_batches(
        model, (images[i : i + batch_size] for i in range(0, len(images), batch_size)), device=device, flip=flip
    )


# ------------------------------------------------------------------------------ BatchNorm folding


#: the layers BatchNorm and per-channel affine layers fold into
_Weighted = nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d | nn.Linear


def _scale_into(layer: _Weighted, scale: Tensor, shift: Tensor) -> None:
    """layer(x) * scale + shift, per output channel, folded into the layer's weight and bias."""
    with torch.no_grad():
        w = layer.weight.detach().double()
        b = layer.bias.detach().double() if layer.bias is not None else torch.zeros_like(scale)
        if isinstance(layer, nn.ConvTranspose2d):
            w = w * scale.view(1, -1, *([1] * (w.dim() - 2)))
        else:
            w = w * scale.view(-1, *([1] * (w.dim() - 1)))
        dtype = layer.weight.dtype
        layer.weight = nn.Parameter(w.to(dtype), requires_grad=False)
        layer.bias = nn.Parameter((b * scale + shift).to(dtype), requires_grad=False)


def _fold_into(layer: _Weighted, bn: nn.modules.batchnorm._BatchNorm) -> bool:
    """w' = w * g / sqrt(v + eps) per output channel, b' = (b - m) * g / sqrt(v + eps) + beta."""
    if bn.running_mean is None or bn.running_var is None:
        return False
    out_ch = layer.weight.shape[0] if not isinstance(layer, nn.ConvTranspose2d) else layer.weight.shape[1]
    if bn.num_features != out_ch:
        return False
    gamma = (
        bn.weight.detach().double() if bn.weight is not None else torch.ones_like(bn.running_var, dtype=torch.float64)
    )
    scale = gamma / torch.sqrt(bn.running_var.double() + bn.eps)
    shift = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(scale)
    _scale_into(layer, scale, shift - bn.running_mean.double() * scale)
    return True


def channel_affine(module: nn.Module, channels: int, spatial_dims: int = 2) -> tuple[Tensor, Tensor] | None:
    """``(scale, shift)`` when ``module`` maps every ``[N, channels, *spatial]`` input to
    ``x * scale + shift`` per channel, else None. Found by probing a float64 copy with zeros, ones and
    random inputs, so any per-channel affine layer is recognised however it is written (parameters
    multiplied in ``forward``, BatchNorm with identity statistics, a frozen scale...)."""
    shape = (2, channels) + (3,) * spatial_dims
    try:
        probe = copy.deepcopy(module).double().eval()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=g, dtype=torch.float64) * 3.0
        with torch.no_grad():
            zero, one, out = (
                probe(t) for t in (torch.zeros(shape, dtype=torch.float64), torch.ones(shape, dtype=torch.float64), x)
            )
    except Exception:  # not callable on such input: not a per-channel affine
        return None
    if not all(isinstance(t, Tensor) and t.shape == shape and t.dtype == torch.float64 for t in (zero, one, out)):
        return None
    per_channel = lambda t: t.transpose(0, 1).reshape(channels, -1)  # noqa: E731
    shift, scale = per_channel(zero)[:, 0], per_channel(one - zero)[:, 0]
    view = (1, channels) + (1,) * spatial_dims
    want = x * scale.view(view) + shift.view(view)
    if not torch.isfinite(want).all() or float((out - want).abs().max()) > 1e-9 * max(1.0, float(want.abs().max())):
        return None
    return scale, shift


_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _leaf_tracer():
    import torch.fx as fx

    class LeafTracer(fx.Tracer):
        """Every module without children is one call in the graph (a plugin's own affine layer
        stays a ``call_module`` node to probe instead of dissolving into arithmetic)."""

        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return next(m.children(), None) is None or super().is_leaf_module(m, qualname)

    return LeafTracer()


def _pairs_from_fx(model: nn.Module, prefix: str = "") -> list[tuple[str, str]]:
    """(layer, follower) module names where the follower's only input is the layer's output and nobody
    else uses that output: BatchNorm after conv/linear, or any leaf module after a conv (probed for a
    per-channel affine later). A module that cannot be traced (data-dependent control flow, an
    autocast block on ``x.device``, ...) is searched child by child, so its blocks still fold."""
    try:
        graph = _leaf_tracer().trace(model)
    except Exception:
        pairs = [(prefix + a, prefix + b) for a, b in _adjacent_in_sequential(model)]
        for name, child in model.named_children():
            if any(True for _ in child.children()):  # a leaf has nothing inside to fold
                pairs += _pairs_from_fx(child, f"{prefix}{name}.")
        return pairs
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        follower = modules.get(node.target) if node.op == "call_module" else None
        if follower is None or isinstance(follower, _FOLDABLE) or len(node.args) != 1 or node.kwargs:
            continue
        src = node.args[0]
        layer = modules.get(src.target) if isinstance(src, torch.fx.Node) and src.op == "call_module" else None
        wanted = _FOLDABLE if isinstance(follower, _BN) else _CONVS
        if (
            isinstance(layer, wanted)
            and len(src.users) == 1
            and calls.get(src.target) == 1
            and calls.get(node.target) == 1
        ):
            pairs.append((prefix + src.target, prefix + node.target))
    return pairs


def _adjacent_in_sequential(mod: nn.Module) -> list[tuple[str, str]]:
    """Adjacent (layer, follower) children of an nn.Sequential that cannot be traced (they run in order)."""
    if not isinstance(mod, nn.Sequential):
        return []
    kids = list(mod.named_children())
    return [
        (n1, n2)
        for (n1, m1), (n2, m2) in zip(kids, kids[1:])
        if (isinstance(m1, _FOLDABLE) and isinstance(m2, _BN))
        or (isinstance(m1, _CONVS) and not isinstance(m2, _FOLDABLE) and next(m2.children(), None) is None)
    ]


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _fold_pair(layer: nn.Module, follower: nn.Module) -> bool:
    if not isinstance(layer, _FOLDABLE):  # _pairs_from_fx pairs only these
        return False
    if isinstance(follower, _BN):
        return _fold_into(layer, follower)
    if isinstance(follower, nn.Identity):
        return False
    out_ch = layer.weight.shape[0]
    found = channel_affine(follower, out_ch, layer.weight.dim() - 2)
    if found is None:
        return False
    _scale_into(layer, *found)
    return True


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``model`` (eval) with BatchNorm folded into the conv/linear layer feeding it, and any
    other per-channel affine layer that follows a convolution (see :func:`channel_affine`) too."""
    model = copy.deepcopy(model).eval()
    pairs = _pairs_from_fx(model)
    folded = 0
    for layer_name, follower_name in pairs:
        if _fold_pair(model.get_submodule(layer_name), model.get_submodule(follower_name)):
            _set_module(model, follower_name, nn.Identity())
            folded += 1
    return model, folded


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


def _padded(images: Tensor, batch: int) -> Tensor:
    if len(images) >= batch:
        return images
    return torch.cat([images, images.new_zeros(batch - len(images), *images.shape[1:])])


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
