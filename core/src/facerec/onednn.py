"""oneDNN convolution calls with pre-packed weights and fused epilogues (CPU, float32, no autograd).

``F.conv2d`` hands oneDNN plain weights, which it reorders into its blocked layout on every call: for
the 512-channel 3x3 layers of a ResNet that is ~9 MB of copying per call, and at batch 8 a few percent of
a bottleneck net's time. :func:`conv2d` reorders once per input shape (cached by the caller) and can add
a residual and apply a ReLU inside the convolution's output loop instead of two more passes over memory.
The arithmetic is the direct convolution's. Anything it cannot run (CUDA, autograd, other dtypes, a
residual that broadcasts) goes through the plain ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

AVAILABLE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")

#: Packed weights kept per layer: one per input shape, for a few batch sizes at most.
MAX_PACKED = 4


def _output_shape(x: Tensor, w: Tensor, stride, padding, dilation) -> tuple[int, ...]:
    size = [(x.shape[i + 2] + 2 * padding[i] - dilation[i] * (w.shape[i + 2] - 1) - 1) // stride[i] + 1
            for i in range(2)]
    return (x.shape[0], w.shape[0], *size)


def _fast_path(x: Tensor, weight: Tensor, residual: Tensor | None) -> bool:
    if not AVAILABLE or x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 4:
        return False
    if weight.dtype != torch.float32 or (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)):
        return False
    if residual is not None:
        return residual.dtype == torch.float32 and not (torch.is_grad_enabled() and residual.requires_grad)
    return True


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int],
           dilation: list[int], groups: int, packed: dict, *, residual: Tensor | None = None,
           relu: bool = False) -> Tensor:
    """``relu?(conv2d(x) + residual?)`` with weights packed into ``packed`` (a dict the caller keeps
    per layer, keyed by input shape and layout)."""
    if not _fast_path(x, weight, residual) or (  # a broadcasting residual: only the plain ops do that
            residual is not None and tuple(residual.shape) != _output_shape(x, weight, stride, padding, dilation)):
        return _plain(x, weight, bias, stride, padding, dilation, groups, residual, relu)
    channels_last = x.is_contiguous(memory_format=torch.channels_last)
    key = (tuple(x.shape), channels_last)
    w = packed.get(key)
    if w is None:
        if len(packed) >= MAX_PACKED:
            packed.clear()
        w = packed[key] = torch.ops.mkldnn._reorder_convolution_weight(weight, padding, stride, dilation, groups,
                                                                       list(x.shape))
    if residual is None:
        return torch.ops.mkldnn._convolution_pointwise(x, w, bias, padding, stride, dilation, groups,
                                                       "relu" if relu else "none", [], "")
    # the post-op reads the residual in the output's layout
    residual = residual.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return torch.ops.mkldnn._convolution_pointwise.binary(x, residual, w, bias, padding, stride, dilation, groups,
                                                          "add", 1.0, "relu" if relu else None, [], "")


def _plain(x, weight, bias, stride, padding, dilation, groups, residual, relu) -> Tensor:
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    if residual is not None:
        y = y + residual
    return F.relu(y) if relu else y
