"""A reader of dlib's own serialisation of trained DNNs (``dlib::serialize(net, out)``, the ``.dat`` files),
written from the format's description; dlib is not needed at run time.

Facts about the format (dlib/serialize.h, dlib/float_details.h, dlib/dnn/{core,layers,input,loss}.h,
dlib/cuda/tensor.h):

* Integers: a control byte (low 4 bits: how many bytes follow, bit 7: negative) and then the magnitude
  little-endian. Booleans: the ASCII byte ``'1'`` or ``'0'``. Strings: an integer length, then the bytes.
  Floating point numbers: two integers, the mantissa and the exponent (value = mantissa * 2**exponent;
  exponents 32000/32001/32002 stand for +inf/-inf/NaN).
* Tensors: version 2, four integer dimensions (num_samples, k, nr, nc), then 4-byte little-endian IEEE
  floats. Alias tensors (shapes of the parts of a layer's ``params``): version 1 and four dimensions.
* A network serialises from the top: the loss layer (version 1, then its details), then every layer
  wrapper's version number down to the input, then the input layer, and then, from the bottom up, each
  computational layer's details followed by its bookkeeping (three booleans and two or three tensors).
  Tag and skip layers write only their version number, so the file holds the sequence of computational
  layers; which tag an ``add_prev`` adds is part of the network's C++ type, not of the file.

:func:`read_dlib_network` returns that sequence as a flat mapping of tensors, bottom-up:
``input.mean`` (the RGB means the input layer subtracts, 0-255), ``input.size`` ([rows, cols]),
``loss.margin``/``loss.distance_threshold``, and per computational layer ``layers.NNN.KIND.FIELD``
(``con``: weight [out, in, kh, kw], bias, geometry [kh, kw, stride_y, stride_x, pad_y, pad_x];
``affine``: gamma, beta, mode (0 = per channel); ``bn_con``/``bn_fc``: gamma, beta, running_mean,
running_var, eps; ``relu``: disabled; ``max_pool``/``avg_pool``: geometry (0 x 0 = the whole image);
``add_prev``: geometry (empty); ``fc``: weight [in, out] (dlib computes x @ weight), bias).
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facerec.errors import WeightsError
from facerec.weights import WeightFormat

#: Loss layers whose networks this reader understands (dlib's metric-learning face descriptors).
METRIC_LOSSES = ("loss_metric_", "loss_metric_2")
_INPUTS = ("input_rgb_image_sized", "input_rgb_image")


class _Truncated(Exception):
    pass


class _Stream:
    """dlib's primitive types read from a byte buffer, with the position for error messages."""

    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise _Truncated()
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def integer(self) -> int:
        ctrl = self.take(1)[0]
        size = ctrl & 0x0F
        if size == 0 or size > 8 or ctrl & 0x70:
            raise ValueError(f"byte 0x{ctrl:02x} at offset {self.pos - 1} is not a dlib integer")
        value = int.from_bytes(self.take(size), "little")
        return -value if ctrl & 0x80 else value

    def boolean(self) -> bool:
        ch = self.take(1)[0]
        if ch not in (ord("0"), ord("1")):
            raise ValueError(f"byte 0x{ch:02x} at offset {self.pos - 1} is not a dlib bool")
        return ch == ord("1")

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        if exponent >= 32000:
            return {32000: math.inf, 32001: -math.inf}.get(exponent, math.nan)
        return math.ldexp(float(mantissa), exponent)

    def string(self, limit: int = 256) -> str:
        n = self.integer()
        if not 0 <= n <= limit:
            raise ValueError(f"a string of {n} bytes at offset {self.pos}")
        raw = bytes(self.take(n))
        if not all(32 <= b < 127 for b in raw):
            raise ValueError(f"non-text bytes where a layer name was expected at offset {self.pos - n}")
        return raw.decode("ascii")

    def peek_name(self) -> str | None:
        """The layer name starting here, if one does (nothing is consumed)."""
        pos = self.pos
        try:
            return self.string(64)
        except (ValueError, _Truncated):
            return None
        finally:
            self.pos = pos

    def peek_integer(self) -> int | None:
        pos = self.pos
        try:
            return self.integer()
        except (ValueError, _Truncated):
            return None
        finally:
            self.pos = pos

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise ValueError(f"tensor version {version} (dlib writes 2)")
        shape = tuple(self.integer() for _ in range(4))
        if any(d < 0 for d in shape):
            raise ValueError(f"tensor of shape {shape}")
        count = math.prod(shape)
        return np.frombuffer(self.take(4 * count), dtype="<f4").reshape(shape).astype(np.float32)

    def alias(self) -> tuple[int, ...]:
        version = self.integer()
        if version != 1:
            raise ValueError(f"alias tensor version {version} (dlib writes 1)")
        return tuple(self.integer() for _ in range(4))


def _t(a: np.ndarray | list | float, dtype=torch.float32) -> Tensor:
    return torch.as_tensor(np.asarray(a), dtype=dtype).clone()


def _part(params: np.ndarray, offset: int, shape: tuple[int, ...], what: str) -> np.ndarray:
    n = math.prod(shape)
    flat = params.reshape(-1)
    if offset + n > flat.size:
        raise ValueError(f"{what} needs {offset + n} parameters, the layer holds {flat.size}")
    return flat[offset : offset + n].reshape(shape)


def _read_layer(s: _Stream, out: OrderedDict, i: int) -> str:
    """One computational layer's details; returns its kind."""
    name = s.string()
    key = f"layers.{i:03d}"
    if name in ("con_4", "con_5", "con_6"):
        params = s.tensor()
        n_filters, nr, nc = s.integer(), s.integer(), s.integer()
        sy, sx, py, px = s.integer(), s.integer(), s.integer(), s.integer()
        filters, _ = s.alias(), s.alias()  # the bias view: its length is n_filters, checked below
        for _ in range(4):
            s.real()  # learning-rate and weight-decay multipliers
        use_bias = s.boolean() if name != "con_4" else True
        if name == "con_6" and s.boolean():
            raise ValueError("a con_ layer with its ReLU fused (use_relu) is not supported")
        out[f"{key}.con.weight"] = _t(_part(params, 0, filters, "con filters"))
        if use_bias:
            out[f"{key}.con.bias"] = _t(_part(params, math.prod(filters), (n_filters,), "con biases"))
        if filters[0] != n_filters:
            raise ValueError(f"con layer with {n_filters} filters but filter tensor {filters}")
        out[f"{key}.con.geometry"] = _t([nr, nc, sy, sx, py, px], torch.int64)
        return "con"
    if name in ("affine_", "affine_2"):
        params = s.tensor()
        gamma, beta = s.alias(), s.alias()
        mode = s.integer()
        disabled = s.boolean() if name == "affine_2" else False
        if disabled:
            out[f"{key}.affine.mode"] = _t(mode, torch.int64)
            out[f"{key}.affine.disabled"] = _t(1, torch.int64)
            return "affine"
        shape = (gamma[1],) if mode == 0 else gamma[1:]  # per channel (CONV_MODE) or per element (FC_MODE)
        out[f"{key}.affine.gamma"] = _t(_part(params, 0, gamma, "affine gamma").reshape(shape))
        out[f"{key}.affine.beta"] = _t(_part(params, math.prod(gamma), beta, "affine beta").reshape(shape))
        out[f"{key}.affine.mode"] = _t(mode, torch.int64)
        return "affine"
    if name in ("bn_con2", "bn_fc2"):
        kind = "bn_con" if name == "bn_con2" else "bn_fc"
        params = s.tensor()
        gamma, beta = s.alias(), s.alias()
        s.tensor(), s.tensor()  # batch means / inverse stds of the last training batch
        running_mean, running_var = s.tensor(), s.tensor()
        s.integer(), s.integer()  # num_updates, running_stats_window_size
        for _ in range(4):
            s.real()
        eps = s.real()
        shape = (gamma[1],) if kind == "bn_con" else gamma[1:]
        out[f"{key}.{kind}.gamma"] = _t(_part(params, 0, gamma, "bn gamma").reshape(shape))
        out[f"{key}.{kind}.beta"] = _t(_part(params, math.prod(gamma), beta, "bn beta").reshape(shape))
        out[f"{key}.{kind}.running_mean"] = _t(running_mean.reshape(shape))
        out[f"{key}.{kind}.running_var"] = _t(running_var.reshape(shape))
        out[f"{key}.{kind}.eps"] = _t(eps, torch.float64)
        return kind
    if name in ("relu_", "relu_2"):
        out[f"{key}.relu.disabled"] = _t(int(s.boolean()) if name == "relu_2" else 0, torch.int64)
        return "relu"
    if name in ("max_pool_2", "avg_pool_2"):
        kind = name[:-2]
        out[f"{key}.{kind}.geometry"] = _t([s.integer() for _ in range(6)], torch.int64)
        return kind
    if name == "add_prev_":
        out[f"{key}.add_prev.geometry"] = torch.zeros(0, dtype=torch.int64)
        return "add_prev"
    if name in ("fc_2", "fc_3"):
        n_out, n_in = s.integer(), s.integer()
        params = s.tensor()
        s.alias(), s.alias()  # the weight and bias views into params: read past, params holds both
        bias_mode = s.integer()
        for _ in range(4):
            s.real()
        use_bias = s.boolean() if name == "fc_3" else True
        out[f"{key}.fc.weight"] = _t(_part(params, 0, (n_in, n_out), "fc weights"))
        if bias_mode == 0 and use_bias:
            out[f"{key}.fc.bias"] = _t(_part(params, n_in * n_out, (n_out,), "fc biases"))
        return "fc"
    raise ValueError(
        f"layer type {name!r} is not one this reader knows (con, affine, bn_con, relu, max_pool, "
        f"avg_pool, add_prev, fc)"
    )


def _bookkeeping(s: _Stream, grad_final: bool) -> None:
    """What an add_layer writes after its details: three flags and its cached tensors."""
    for _ in range(3):
        s.boolean()
    s.tensor(), s.tensor()  # x_grad, cached_output
    if grad_final or s.peek_integer() == 2:  # params_grad (add_layer version 2) / grad_final (input level)
        s.tensor()


def read_dlib_network(path: str | os.PathLike) -> OrderedDict[str, Tensor]:
    """Parse a dlib DNN ``.dat`` file of a metric-learning network (loss_metric) into a flat mapping of
    tensors (module doc). Anything else (another dlib object, another loss, a cut file) is one line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    s = _Stream(data)
    out: OrderedDict[str, Tensor] = OrderedDict()
    where = "the loss layer"
    try:
        loss = s.string() if s.integer() == 1 else None
        if loss is None or not loss.startswith("loss_"):
            raise ValueError("not a dlib neural network")
        if loss not in METRIC_LOSSES:
            raise WeightsError(
                f"{path}: a dlib network with loss layer {loss!r} (e.g. an object detector such as "
                f"mmod_human_face_detector.dat), not a face descriptor: this reader reads loss_metric_ "
                f"networks such as dlib_face_recognition_resnet_model_v1.dat"
            )
        margin, threshold = (s.real(), s.real()) if loss == "loss_metric_2" else (0.1, 0.75)
        out["loss.margin"], out["loss.distance_threshold"] = _t(margin), _t(threshold)
        where = "the layer versions"
        versions = []
        while (name := s.peek_name()) is None or not name.startswith("input"):
            versions.append(s.integer())
            if len(versions) > 100_000:
                raise ValueError("no input layer")
        where = "the input layer"
        name = s.string()
        if name not in _INPUTS:
            raise ValueError(f"input layer {name!r} (this reader knows {', '.join(_INPUTS)})")
        out["input.mean"] = _t([s.real(), s.real(), s.real()])
        if name == "input_rgb_image_sized":
            out["input.size"] = _t([s.integer(), s.integer()], torch.int64)
        i = 0
        where = "layer 0"
        _read_layer(s, out, i)
        _bookkeeping(s, grad_final=True)
        if versions and versions[-1] >= 3:
            s.integer()  # _sample_expansion_factor
        while not s.at_end():
            i += 1
            where = f"layer {i}"
            _read_layer(s, out, i)
            _bookkeeping(s, grad_final=False)
        if i + 1 > len(versions):
            raise ValueError(f"{i + 1} layers but only {len(versions)} layer versions")
    except WeightsError:
        raise
    except _Truncated:
        raise WeightsError(
            f"{path}: truncated dlib file: it ends inside {where} (at byte {s.pos} of "
            f"{len(data)}); download or reinstall it"
        ) from None
    except ValueError as exc:
        if where == "the loss layer":
            raise WeightsError(
                f"{path}: not a dlib neural network file: it does not start with a loss layer "
                f"(dlib's shape predictors and HOG detectors are other kinds of .dat)"
            ) from None
        raise WeightsError(f"{path}: unreadable dlib network at {where} (byte {s.pos}): {exc}") from None
    return out


def looks_like_dlib_network(head: bytes) -> bool:
    """A dlib DNN file starts with version 1 of its loss layer and the loss layer's name."""
    return len(head) > 9 and head[:3] == b"\x01\x01\x01" and head[4:9] == b"loss_"


DLIB_DAT = WeightFormat(
    "dlib-dat",
    read_dlib_network,
    (".dat",),
    looks_like_dlib_network,
    origin="dlib's DNN serialisation (.dat of dlib::serialize; loss_metric face descriptors)",
)
