"""A writer of dlib's DNN serialisation for tests: builds ``.dat`` files of dlib's face descriptor layout
with chosen weights (and variants: batch-norm layers, older layer versions, other losses), so the reader
is tested on files whose every number is known, also where the released model is not installed.

Written from the format's description (see facerec_dlib.serialization), independently of the reader.
"""

from __future__ import annotations

import math

import numpy as np

from facerec_dlib.resnet29 import BLOCKS


def integer(v: int) -> bytes:
    mag = abs(int(v))
    body = mag.to_bytes(max(1, (mag.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if v < 0 else 0)]) + body


def real(x: float) -> bytes:
    m, e = math.frexp(float(x))
    return integer(int(m * (1 << 53))) + integer(e - 53)


def string(s: str) -> bytes:
    return integer(len(s)) + s.encode("ascii")


def boolean(b: bool) -> bytes:
    return b"1" if b else b"0"


def tensor(a: np.ndarray | None, shape: tuple[int, ...] | None = None) -> bytes:
    a = np.zeros((0, 0, 0, 0), np.float32) if a is None else np.asarray(a, dtype="<f4")
    dims = tuple(shape or a.shape)
    dims = dims + (1,) * (4 - len(dims))
    return integer(2) + b"".join(integer(d) for d in dims) + a.astype("<f4").tobytes()


def alias(*shape: int) -> bytes:
    dims = tuple(shape) + (1,) * (4 - len(shape))
    return integer(1) + b"".join(integer(d) for d in dims)


def con(w: np.ndarray, b: np.ndarray, stride: int, pad: int, version: str = "con_6") -> bytes:
    n, k, kh, kw = w.shape
    out = string(version) + tensor(np.concatenate([w.ravel(), b.ravel()]), (w.size + b.size, 1, 1, 1))
    out += integer(n) + integer(kh) + integer(kw) + integer(stride) + integer(stride) + integer(pad) + integer(pad)
    out += alias(n, k, kh, kw) + alias(1, n) + real(1) + real(1) + real(1) + real(0)
    if version in ("con_5", "con_6"):
        out += boolean(True)
    if version == "con_6":
        out += boolean(False)
    return out


def affine(gamma: np.ndarray, beta: np.ndarray) -> bytes:
    c = len(gamma)
    return (
        string("affine_2")
        + tensor(np.concatenate([gamma, beta]), (2 * c, 1, 1, 1))
        + alias(1, c)
        + alias(1, c)
        + integer(0)
        + boolean(False)
    )


def bn_con(gamma, beta, mean, var, eps=1e-5) -> bytes:
    c = len(gamma)
    return (
        string("bn_con2")
        + tensor(np.concatenate([gamma, beta]), (2 * c, 1, 1, 1))
        + alias(1, c)
        + alias(1, c)
        + tensor(None)
        + tensor(None)
        + tensor(mean, (1, c))
        + tensor(var, (1, c))
        + integer(1000)
        + integer(100)
        + real(1)
        + real(1)
        + real(1)
        + real(0)
        + real(eps)
    )


def relu(version: str = "relu_2") -> bytes:
    return string(version) + (boolean(False) if version == "relu_2" else b"")


def pool(kind: str, k: int, stride: int) -> bytes:
    return string(f"{kind}_pool_2") + b"".join(integer(v) for v in (k, k, stride, stride, 0, 0))


def fc(w: np.ndarray) -> bytes:  # w: [in, out], no bias
    n_in, n_out = w.shape
    return (
        string("fc_3")
        + integer(n_out)
        + integer(n_in)
        + tensor(w.ravel(), (n_in, n_out, 1, 1))
        + alias(n_in, n_out)
        + alias()
        + integer(1)
        + real(1)
        + real(1)
        + real(1)
        + real(0)
        + boolean(False)
    )


def descriptor_network(
    seed: int = 0,
    *,
    bn_every: int = 0,
    loss: str = "loss_metric_2",
    mean=(122.782, 117.001, 104.298),
    old_layers: bool = False,
) -> tuple[bytes, dict]:
    """A dlib face-descriptor file with random weights, and the state dict facerec-dlib must make of it.
    ``bn_every`` > 0 writes every n-th affine layer as a training-time batch norm (dlib freezes those on
    load); ``old_layers`` writes the oldest layer versions (con_4, relu_, add_layer without params_grad)."""
    rng = np.random.default_rng(seed)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    layers: list[bytes] = []
    state: dict[str, np.ndarray] = {}
    n_affine = [0]

    def conv(name, cin, cout, k, stride, pad):
        w, b = f32(cout, cin, k, k) * 0.1, f32(cout) * 0.1
        layers.append(con(w, b, stride, pad, "con_4" if old_layers else "con_6"))
        state[f"{name}.weight"], state[f"{name}.bias"] = w, b

    def aff(name, c):
        g, b = (rng.random(c) + 0.5).astype(np.float32), f32(c) * 0.1
        n_affine[0] += 1
        if bn_every and n_affine[0] % bn_every == 0:
            m, v = f32(c) * 0.1, (rng.random(c) + 0.5).astype(np.float32)
            layers.append(bn_con(g, b, m, v, 1e-5))
            scale = g.astype(np.float64) / np.sqrt(v.astype(np.float64) + 1e-5)
            state[f"{name}.gamma"], state[f"{name}.beta"] = scale, b - scale * m
        else:
            layers.append(affine(g, b))
            state[f"{name}.gamma"], state[f"{name}.beta"] = g, b

    r = relu("relu_" if old_layers else "relu_2")
    conv("stem_conv", 3, 32, 7, 2, 0)
    aff("stem_affine", 32)
    layers += [r, pool("max", 3, 2)]
    extras = 0
    for i, (cin, cout, down) in enumerate(BLOCKS):
        conv(f"blocks.{i}.conv1", cin, cout, 3, 2 if down else 1, 0 if down else 1)
        aff(f"blocks.{i}.aff1", cout)
        layers.append(r)
        conv(f"blocks.{i}.conv2", cout, cout, 3, 1, 1)
        aff(f"blocks.{i}.aff2", cout)
        if down:
            layers.append(pool("avg", 2, 2))
        layers += [string("add_prev_"), r]
        extras += 3 if down else 1  # tag1 (+ tag2, skip1): only their version numbers are written
    layers.append(pool("avg", 0, 1))
    w = f32(256, 128) * 0.05
    layers.append(fc(w))
    state["fc.weight"] = w.T
    add_version = 1 if old_layers else 2
    out = integer(1) + string(loss) + (real(0.04) + real(0.6) if loss == "loss_metric_2" else b"")
    out += integer(add_version) * (len(layers) - 1) + integer(1) * extras + integer(3)
    out += string("input_rgb_image_sized") + b"".join(real(m) for m in mean) + integer(150) + integer(150)
    bottom_keep = (
        boolean(True) + boolean(False) + boolean(False) + tensor(None) + tensor(None) + tensor(None) + integer(1)
    )
    keep = boolean(True) + boolean(False) + boolean(False) + tensor(None) + tensor(None)
    if add_version == 2:
        keep += tensor(None)  # params_grad
    out += layers[0] + bottom_keep + b"".join(layer + keep for layer in layers[1:])
    return out, {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}
