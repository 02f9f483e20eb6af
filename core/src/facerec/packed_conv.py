"""Convolutions with pre-packed weights and fused ReLU / residual add for the CPU inference path
(:mod:`facerec.onednn` does the calls): :class:`PackedConv2d` replaces a Conv2d, and :func:`pack_convs`
rewrites a model's blocks with :mod:`torch.fx` so that ``relu(conv(x) + shortcut)`` is one call. Results
equal the plain ops up to float32 rounding; :func:`facerec.inference.optimize_for_inference` still checks
the whole model against its float64 forward.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import onednn
from .winograd import WinogradConv2d

class PackedConv2d(nn.Module):
    """An inference replacement of a zero-padded ``nn.Conv2d``, optionally followed by a ReLU
    (``relu``) and / or a residual add (``forward(x, residual)`` with ``add=True``):
    ``relu(conv(x) + residual)``, computed by :func:`facerec.onednn.conv2d` with weights packed once per
    input shape. Keeps the Conv2d's state-dict keys (``weight``, ``bias``)."""

    def __init__(self, conv: nn.Conv2d, *, add: bool = False, relu: bool = False):
        super().__init__()
        if not packable(conv):
            raise ValueError(f"PackedConv2d: {conv} is not a zero-padded Conv2d with numeric padding")
        self.weight = nn.Parameter(conv.weight.detach(), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach(), requires_grad=False)
        self.stride, self.padding = list(conv.stride), list(conv.padding)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self.add, self.relu = add, relu
        self._packed: dict = {}  # input shape -> weights in oneDNN's layout

    def __getstate__(self):  # deep copies and pickles leave the opaque packed weights behind
        return {**super().__getstate__(), "_packed": {}}

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        if self.add and residual is None:
            raise TypeError("PackedConv2d(add=True) needs the residual to add")
        return onednn.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                             self._packed, residual=residual if self.add else None, relu=self.relu)

    def extra_repr(self) -> str:
        k, c = self.weight.shape[:2]
        return (f"{c * self.groups}, {k}, kernel_size={tuple(self.weight.shape[2:])}, stride={tuple(self.stride)}, "
                f"padding={tuple(self.padding)}, add={self.add}, relu={self.relu}")


def packable(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple))


# ------------------------------------------------------------------------------ the graph rewrite

_ADD = {operator.add, torch.add}
_RELU = {F.relu, torch.relu}


def _is_relu(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_function" and node.target in _RELU:
        return len(node.args) == 1
    if node.op == "call_method" and node.target in ("relu", "relu_"):
        return len(node.args) == 1
    return node.op == "call_module" and type(modules.get(node.target)) is nn.ReLU


def _is_add(node: torch.fx.Node) -> bool:
    if node.op == "call_function" and node.target in _ADD:
        return len(node.args) == 2 and not node.kwargs
    return node.op == "call_method" and node.target in ("add", "add_") and len(node.args) == 2 and not node.kwargs


def _only_user(node: torch.fx.Node) -> torch.fx.Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None


def _skip_identity(node: torch.fx.Node, modules: dict[str, nn.Module]) -> torch.fx.Node:
    """Follow a chain of single-use nn.Identity calls (what folded BatchNorms became)."""
    while True:
        user = _only_user(node)
        if user is None or user.op != "call_module" or type(modules.get(user.target)) is not nn.Identity:
            return node
        node = user


def _fusable_conv(mod: nn.Module | None) -> bool:
    return packable(mod) or (isinstance(mod, WinogradConv2d) and not mod.add and not mod.relu)


def fuse_graph(gm: torch.fx.GraphModule) -> int:
    """In a traced block, turn ``conv -> [identity] -> [add other] -> [relu]`` into one call of a
    :class:`PackedConv2d` (or of the :class:`WinogradConv2d` with its ``add`` / ``relu`` set) wherever
    each intermediate has no other user; returns how many convs were fused."""
    modules = dict(gm.named_modules())
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    fused = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not _fusable_conv(modules.get(node.target)) or len(node.args) != 1:
            continue
        if calls[node.target] != 1 or node.kwargs:  # a conv called twice must stay as it is for the other call
            continue
        end = _skip_identity(node, modules)
        if any(len(n.users) != 1 for n in _chain(node, end)):
            continue
        nxt = _only_user(end)
        other = None
        if nxt is not None and _is_add(nxt) and sum(a is end for a in nxt.args) == 1:
            other = nxt.args[1] if nxt.args[0] is end else nxt.args[0]
            if not isinstance(other, torch.fx.Node):
                other = None
            else:
                end, nxt = nxt, _only_user(nxt)
        relu = nxt is not None and _is_relu(nxt, modules)  # nxt is set only when it is end's one user
        if relu:
            end = nxt
        if other is None and not relu:
            continue
        conv = modules[node.target]
        if isinstance(conv, WinogradConv2d):
            conv.add, conv.relu = other is not None, relu
        else:
            gm.add_submodule(node.target, PackedConv2d(conv, add=other is not None, relu=relu))
        with gm.graph.inserting_after(end):
            new = gm.graph.call_module(node.target, (node.args[0],) + ((other,) if other is not None else ()))
        end.replace_all_uses_with(new)
        for dead in reversed(_chain(node, end)):
            gm.graph.erase_node(dead)
        fused += 1
    if fused:
        gm.graph.lint()
        gm.recompile()
    return fused


def _chain(start: torch.fx.Node, end: torch.fx.Node) -> list[torch.fx.Node]:
    """start, its only user, that one's only user, ... up to end."""
    out = [start]
    while out[-1] is not end:
        out.append(_only_user(out[-1]))
    return out


_LEAVES = (WinogradConv2d, PackedConv2d)


class _Tracer(torch.fx.Tracer):
    """The default tracer, with our own inference layers kept as single calls."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, _LEAVES) or super().is_leaf_module(m, qualname)


def _traceable(mod: nn.Module) -> bool:
    """A module with a forward of its own (torch.nn's own modules are leaves or plain containers)."""
    return (not type(mod).__module__.startswith("torch.") and not isinstance(mod, _LEAVES)
            and type(mod).forward is not nn.Module.forward)


def pack_convs(model: nn.Module, *, fuse: bool = True) -> int:
    """In place: every packable Conv2d of ``model`` becomes a :class:`PackedConv2d`; with ``fuse``, a
    ReLU and / or residual add that follows one (or a :class:`WinogradConv2d`) inside a block (any
    traceable module below the top level, which keeps its class) is folded into it. Returns how many
    convolutions were packed or fused."""
    count = 0
    if fuse:
        done: list[str] = []
        for name, mod in list(model.named_modules()):
            if not name or not _traceable(mod) or any(name.startswith(p + ".") for p in done):
                continue
            try:
                gm = torch.fx.GraphModule(mod, _Tracer().trace(mod), type(mod).__name__)
            except Exception:  # data-dependent control flow and the like: its children are tried instead
                continue
            done.append(name)  # everything below was inlined into this graph
            n = fuse_graph(gm)
            if n:
                gm.train(mod.training)
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent) if parent else model, child, gm)
                count += n
    for mod in list(model.modules()):
        for child_name, child in list(mod.named_children()):
            if packable(child):
                setattr(mod, child_name, PackedConv2d(child))
                count += 1
    return count
