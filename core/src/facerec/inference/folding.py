"""BatchNorm folding: eval-mode BatchNorm, and any per-channel affine layer that follows a convolution
(however it is written), folded into the conv / linear layer before it (used by optimize_for_inference)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


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
