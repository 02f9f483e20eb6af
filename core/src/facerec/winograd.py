"""Winograd convolution for 3x3 stride-1 layers on CPU, used by the inference path.

On CPUs without AVX-512 (where oneDNN offers no Winograd kernel) the direct convolutions of face backbones
already run at ~90% of the machine's matmul speed, so only fewer multiplications can make them faster.
Winograd F(m x m, 3x3) computes each m x m output tile from an (m+2) x (m+2) input tile with (m+2)^2
multiplications per channel pair instead of 9 m^2: one batched matmul over the transformed tiles, plus
cheap additive transforms. F(2x2) is as accurate as the direct kernel; F(4x4) loses about one digit
(~5e-6 relative per layer). Which of direct / F(2) / F(4) is fastest depends on the layer's shape, so
each layer times them on its first input of a new shape and keeps the winner (like cudnn.benchmark).
"""

from __future__ import annotations

import math
import threading
import time

import torch
from torch import Tensor, nn

from . import onednn

#: Filter transforms G (Lavin & Gray 2016) per output tile size m; the input (B^T) and output (A^T)
#: transforms are written out as shared-term additions in :func:`_input_1d` and :func:`_output_1d`.
_FILTER_TRANSFORM = {
    2: [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
    4: [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
}

#: Layers with fewer input or output channels stay direct: their transforms cost more than they save.
MIN_CHANNELS = 32


def eligible(conv: nn.Module) -> bool:
    """A plain 3x3, stride-1, undilated, ungrouped, zero-padded (0 or 1) Conv2d with enough channels."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple) and conv.padding[0] == conv.padding[1] and conv.padding[0] in (0, 1)
            and conv.in_channels >= MIN_CHANNELS and conv.out_channels >= MIN_CHANNELS)


def transform_weight(weight: Tensor, m: int) -> Tensor:
    """[K, C, 3, 3] filters -> [(m+2)^2, C, K] transformed filters G g G^T (computed in float64)."""
    g = torch.tensor(_FILTER_TRANSFORM[m], dtype=torch.float64)
    k, c = weight.shape[:2]
    # u[(i, m)] = sum_(j, l) G[i, j] g[j, l] G[m, l]: one GEMM of kron(G, G) with the filters laid out
    # [(j, l), (c, k)], so that the product is already in the [(i, m), c, k] order the matmul wants
    taps = weight.detach().permute(2, 3, 1, 0).reshape(9, c * k).double()
    u = torch.kron(g, g).to(weight.device) @ taps
    return u.reshape((m + 2) ** 2, c, k).to(weight.dtype)


def _input_1d(m: int, d: list[Tensor], out: list[Tensor]) -> None:
    """out[i] = sum_k B^T[i, k] d[k]: the input transform along one axis, common terms shared."""
    if m == 2:
        torch.sub(d[0], d[2], out=out[0])
        torch.add(d[1], d[2], out=out[1])
        torch.sub(d[2], d[1], out=out[2])
        torch.sub(d[1], d[3], out=out[3])
        return
    t0 = torch.add(d[4], d[2], alpha=-4)
    t1 = torch.add(d[3], d[1], alpha=-4)
    torch.add(t0, t1, out=out[1])  # -4 d1 - 4 d2 + d3 + d4
    torch.sub(t0, t1, out=out[2])  # 4 d1 - 4 d2 - d3 + d4
    torch.add(t0, d[0], alpha=4, out=out[0]).sub_(d[2])  # 4 d0 - 5 d2 + d4
    torch.sub(d[5], t1, out=out[5]).sub_(d[3], alpha=4)  # 4 d1 - 5 d3 + d5
    t2 = torch.sub(d[4], d[2], out=t0)
    t3 = torch.sub(d[1], d[3], out=t1)
    torch.add(t2, t3, alpha=-2, out=out[3])  # -2 d1 - d2 + 2 d3 + d4
    torch.add(t2, t3, alpha=2, out=out[4])  # 2 d1 - d2 - 2 d3 + d4


def _output_1d(m: int, p: list[Tensor], out: list[Tensor]) -> None:
    """out[i] = sum_k A^T[i, k] p[k]: the output transform along one axis, common terms shared."""
    if m == 2:
        torch.add(p[0], p[1], out=out[0]).add_(p[2])
        torch.sub(p[1], p[2], out=out[1]).sub_(p[3])
        return
    s12, d12 = torch.add(p[1], p[2]), torch.sub(p[1], p[2])
    s34, d34 = torch.add(p[3], p[4]), torch.sub(p[3], p[4])
    torch.add(s12, s34, out=out[0]).add_(p[0])
    torch.add(d12, d34, alpha=2, out=out[1])
    torch.add(s12, s34, alpha=4, out=out[2])
    torch.add(d12, d34, alpha=8, out=out[3]).add_(p[5])


class Workspace:
    """Scratch memory reused by the Winograd layers of one model, call after call.

    A convolution's tiles and products take tens of MB (58 MB each for a 64-channel 112 x 112 layer in
    F(4x4) at batch 8), beyond glibc's largest mmap threshold (32 MB), so without reuse every call gets them
    as fresh pages from the kernel: ~35k page faults and 1.8x the time for that layer. Two buffers per
    thread, device and dtype suffice, as the steps alternate between them (padded input -> rows -> tiles
    -> products -> half-transformed output); they grow to the largest layer and are freed with the model.
    Copies of the model get a workspace of their own.
    """

    def __init__(self):
        self._local = threading.local()  # concurrent forwards in threads must not share scratch

    def buffer(self, slot: int, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """An uninitialised tensor of ``shape`` in scratch buffer ``slot`` (0 or 1)."""
        pool = self._local.__dict__.setdefault("buffers", {})
        key, numel = (slot, like.dtype, like.device), math.prod(shape)
        buf = pool.get(key)
        if buf is None or buf.numel() < numel:
            pool.pop(key, None)  # free the smaller one before taking the larger
            with torch.inference_mode(False):  # a normal tensor: usable in and out of inference mode
                buf = pool[key] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return buf[:numel].view(shape)

    def __deepcopy__(self, memo) -> "Workspace":
        return Workspace()

    def __reduce__(self):
        return (Workspace, ())


def _padded_nhwc(x: Tensor, padding: int, hp: int, wp: int, out: Tensor) -> Tensor:
    """``x`` [N, C, H, W] as NHWC in ``out`` [N, hp, wp, C], zero-padded by ``padding`` at the top and left
    and by what is left up to hp x wp at the bottom and right."""
    h, w = x.shape[2:]
    out[:, :padding].zero_()
    out[:, padding + h:].zero_()
    out[:, padding:padding + h, :padding].zero_()
    out[:, padding:padding + h, padding + w:].zero_()
    out[:, padding:padding + h, padding:padding + w].copy_(x.permute(0, 2, 3, 1))
    return out


def winograd_conv(x: Tensor, u: Tensor, bias: Tensor | None, m: int, padding: int,
                  workspace: Workspace | None = None) -> Tensor:
    """3x3 stride-1 convolution of ``x`` [N, C, H, W] by F(m x m, 3x3) with filters ``u`` from
    :func:`transform_weight`; returns [N, K, Ho, Wo] in channels-last memory (a new tensor). Intermediates
    live in ``workspace`` (a fresh one per call if None)."""
    ws = workspace if workspace is not None else Workspace()
    a = m + 2
    n, c, h, w = x.shape
    k = u.shape[2]
    ho, wo = h + 2 * padding - 2, w + 2 * padding - 2
    th, tw = -(-ho // m), -(-wo // m)
    # NHWC, zero-padded so that th x tw whole tiles fit
    xp = _padded_nhwc(x, padding, m * th + 2, m * tw + 2, ws.buffer(0, (n, m * th + 2, m * tw + 2, c), x))
    rows = ws.buffer(1, (a, n, th, xp.shape[2], c), x)  # B^T applied along H ...
    _input_1d(m, [xp[:, i:i + m * th:m] for i in range(a)], list(rows))
    v = ws.buffer(0, (a, a, n, th, tw, c), x)  # ... then along W (xp is no longer needed)
    _input_1d(m, [rows[:, :, :, j:j + m * tw:m] for j in range(a)], [v[:, j] for j in range(a)])
    prod = ws.buffer(1, (a * a, n * th * tw, k), x)
    torch.bmm(v.view(a * a, n * th * tw, c), u, out=prod)
    prod = prod.view(a, a, n, th, tw, k)
    if bias is not None:  # A^T e_11 A is all ones (A^T[:, 1] = 1), so the bias enters every output once
        prod[1, 1].add_(bias)
    half = ws.buffer(0, (m, a, n, th, tw, k), x)  # A^T along H ...
    _output_1d(m, list(prod), list(half))
    y = torch.empty(n, th, m, tw, m, k, dtype=x.dtype, device=x.device)  # ... then along W, in NHWC order
    _output_1d(m, [half[:, j] for j in range(a)], [y[:, :, :, :, j].permute(2, 0, 1, 3, 4) for j in range(m)])
    y = y.view(n, m * th, m * tw, k)
    if m * th != ho or m * tw != wo:
        y = y[:, :ho, :wo].contiguous()
    return y.permute(0, 3, 1, 2)


class WinogradConv2d(nn.Module):
    """Drop-in inference replacement of an eligible :class:`nn.Conv2d` (see :func:`eligible`).

    On CPU without autograd it times direct / F(2x2) / F(4x4) on the first input of each (C, H, W)
    (on at most :data:`TUNE_IMAGES` images, so tuning costs a fraction of one batch) and then uses the
    fastest, a decision shared by every layer of the same geometry in the process; elsewhere (CUDA,
    gradients) it is the direct convolution. ``choices`` limits the candidates (0 = direct), e.g.
    ``(0, 2)`` to keep the direct kernel's accuracy. ``force`` pins one algorithm (used by the accuracy
    check of :func:`facerec.inference.optimize_for_inference`). The direct kernel runs with pre-packed
    weights (:mod:`facerec.onednn`). With ``add`` / ``relu`` set (by :func:`facerec.packed_conv.pack_convs`)
    the layer computes ``relu(conv(x) + residual)``, ``forward(x, residual)``. Its scratch memory is
    ``workspace`` (by default its own; :func:`replace_convs` gives all layers of a model one).
    """

    def __init__(self, conv: nn.Conv2d, choices: tuple[int, ...] = (0, 2, 4), *, add: bool = False,
                 relu: bool = False, workspace: Workspace | None = None):
        super().__init__()
        if not eligible(conv):
            raise ValueError(f"WinogradConv2d: {conv} is not a 3x3 stride-1 conv with >= {MIN_CHANNELS} channels")
        self.padding = conv.padding[0]
        self.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        self.choices = tuple(choices)
        self.force: int | None = None
        self.chosen: dict[tuple, int] = {}
        # transformed filters by (m, dtype), made on first use; after tuning only the chosen ones are
        # kept (F(4x4) filters take 4x the memory of the 3x3 ones)
        self._transformed: dict[tuple[int, torch.dtype], Tensor] = {}
        self.add, self.relu = add, relu
        self._packed: dict = {}  # the direct kernel's weights in oneDNN's layout, per input shape
        self.workspace = workspace if workspace is not None else Workspace()

    def __getstate__(self):  # copies leave the opaque packed weights behind
        return {**super().__getstate__(), "_packed": {}}

    def _filters(self, m: int) -> Tensor:
        key = (m, self.weight.dtype)
        if key not in self._transformed:
            self._transformed[key] = transform_weight(self.weight, m)
        return self._transformed[key]

    def _run(self, x: Tensor, m: int, residual: Tensor | None = None) -> Tensor:
        if m == 0:
            return onednn.conv2d(x, self.weight, self.bias, [1, 1], [self.padding] * 2, [1, 1], 1, self._packed,
                                 residual=residual, relu=self.relu)
        y = winograd_conv(x, self._filters(m), self.bias, m, self.padding, self.workspace)  # a new tensor
        if residual is not None:
            same = residual.dtype == y.dtype and torch.broadcast_shapes(y.shape, residual.shape) == y.shape
            y = y.add_(residual) if same else y + residual
        return y.relu_() if self.relu else y

    def _tune(self, x: Tensor) -> int:
        x = x[:TUNE_IMAGES]
        best, best_t = 0, float("inf")
        for m in self.choices:
            self._run(x, m)  # warm-up: allocations, caches
            times = []
            for _ in range(TUNE_REPEATS):
                t0 = time.perf_counter()
                self._run(x, m)
                times.append(time.perf_counter() - t0)
            if min(times) < best_t:
                best, best_t = m, min(times)
        return best

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        if self.add and residual is None:
            raise TypeError("WinogradConv2d(add=True) needs the residual to add")
        residual = residual if self.add else None
        if x.device.type != "cpu" or (torch.is_grad_enabled() and x.requires_grad) or x.dim() != 4:
            return self._run(x, 0, residual)
        if self.force is not None:
            return self._run(x, self.force, residual)
        key = (tuple(x.shape[1:]), x.dtype)
        m = self.chosen.get(key)
        if m is None:
            # layers of the same geometry share one decision (deep nets repeat a few block shapes dozens
            # of times): IResNet-200's first batch tunes ~10 configurations instead of ~190 layers
            shared = (key, self.weight.shape[0], self.padding, self.choices, torch.get_num_threads())
            if shared not in _DECISIONS:
                _DECISIONS[shared] = self._tune(x) if len(self.choices) > 1 else self.choices[0]
            m = self.chosen[key] = _DECISIONS[shared]
            used = set(self.chosen.values())
            self._transformed = {k: u for k, u in self._transformed.items() if k[0] in used}
        return self._run(x, m, residual)

    def extra_repr(self) -> str:
        return (f"{self.weight.shape[1]}, {self.weight.shape[0]}, padding={self.padding}, "
                f"choices={self.choices}, chosen={sorted(set(self.chosen.values()))}, add={self.add}, relu={self.relu}")


#: Tuning runs each candidate on at most this many images of the first batch, and keeps the fastest.
TUNE_IMAGES = 8
TUNE_REPEATS = 2

#: Decisions by (input (C, H, W) and dtype, output channels, padding, candidates, threads).
_DECISIONS: dict[tuple, int] = {}


def replace_convs(model: nn.Module, choices: tuple[int, ...] = (0, 2, 4)) -> int:
    """Swap every eligible Conv2d of ``model`` (in place) for a :class:`WinogradConv2d`, all sharing one
    :class:`Workspace`; returns how many."""
    swapped, workspace = 0, Workspace()
    for mod in list(model.modules()):
        for child_name, child in list(mod.named_children()):
            if eligible(child):
                setattr(mod, child_name, WinogradConv2d(child, choices, workspace=workspace))
                swapped += 1
    return swapped


def force_algorithm(model: nn.Module, m: int | None) -> None:
    """Pin every :class:`WinogradConv2d` of ``model`` to algorithm ``m`` (None: back to tuning)."""
    for mod in model.modules():
        if isinstance(mod, WinogradConv2d):
            mod.force = m
