"""Decoding the images raw photo folders hold: grayscale, CMYK, palette, 16-bit, EXIF-rotated, broken.

Every test writes its own image with PIL (or by hand for 16-bit RGB PNG, which PIL cannot write)
and checks the canonical RGB result against the pixels it encoded.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from facerec.data.decode import decode_uint8, read_image
from facerec.errors import DataError


def _scene(h: int = 48, w: int = 64) -> np.ndarray:
    """Smooth, asymmetric RGB content (survives JPEG; any flip or turn changes it a lot)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 60)], -1).astype(np.uint8)
    img[: h // 3, : w // 4] = (255, 0, 0)
    return img


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _hwc(t) -> np.ndarray:
    assert t.dtype.is_floating_point is False and t.shape[0] == 3
    return t.permute(1, 2, 0).numpy().astype(int)


def _gray(img: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(img).convert("L")).astype(int)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF"])
def test_grayscale_expands_to_rgb(fmt):
    gray = _gray(_scene())
    out = _hwc(decode_uint8(_save(Image.fromarray(gray.astype(np.uint8)), fmt), f"gray.{fmt}"))
    assert out.shape == (*gray.shape, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert np.abs(out[..., 0] - gray).mean() < (2.0 if fmt == "JPEG" else 1e-9)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_images_give_their_colours(fmt):
    img = _scene()
    pal = Image.fromarray(img).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    expect = np.asarray(pal.convert("RGB")).astype(int)
    out = _hwc(decode_uint8(_save(pal, fmt), f"palette.{fmt}"))
    assert (out == expect).all()
    assert tuple(out[2, 2]) == (255, 0, 0)


def test_alpha_is_dropped():
    img = _scene()
    rgba = np.dstack([img, np.full(img.shape[:2], 100, np.uint8)])
    out = _hwc(decode_uint8(_save(Image.fromarray(rgba, "RGBA"), "PNG"), "rgba.png"))
    assert (out == img).all()


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_converts_to_rgb(fmt):
    img = _scene()
    data = _save(Image.fromarray(img).convert("CMYK"), fmt, **({"quality": 98} if fmt == "JPEG" else {}))
    out = _hwc(decode_uint8(data, f"cmyk.{fmt}"))
    assert np.abs(out - img).mean() < (4.0 if fmt == "JPEG" else 1e-9)
    assert np.abs(out[3, 3] - (255, 0, 0)).max() < 12  # red stays red (not inverted, not cyan)


def _png16_rgb(arr16: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (PIL cannot write one)."""
    h, w, _ = arr16.shape
    raw = b"".join(b"\x00" + arr16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_16bit_png_rgb_is_scaled_not_clipped():
    img = _scene()
    out = decode_uint8(_png16_rgb(img.astype(np.uint16) * 257), "deep.png")
    assert str(out.dtype) == "torch.uint8"
    assert (_hwc(out) == img).all()


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_grayscale_is_scaled_not_clipped(fmt):
    gray = _gray(_scene())
    im16 = Image.fromarray((gray * 257).astype(np.uint16))
    assert im16.mode.startswith("I;16")
    out = _hwc(decode_uint8(_save(im16, fmt), f"deep.{fmt}"))
    assert (out[..., 0] == gray).all() and (out[..., 2] == gray).all()
    assert out.max() < 255  # a clipping decoder would saturate almost everything


# What a viewer does to the stored pixels for EXIF orientation o (numpy [H, W, C]).
_SHOW = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}
_STORE = {**_SHOW, 6: _SHOW[8], 8: _SHOW[6]}  # the inverse of showing


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_exif_orientation_is_applied(orientation, fmt):
    upright = _scene()
    stored = np.ascontiguousarray(_STORE[orientation](upright))
    exif = Image.Exif()
    exif[0x0112] = orientation
    kw = {"quality": 97} if fmt == "JPEG" else {}
    out = _hwc(decode_uint8(_save(Image.fromarray(stored), fmt, exif=exif, **kw), f"turned.{fmt}"))
    assert out.shape == upright.shape
    err = np.abs(out - upright).mean()
    assert err < (3.0 if fmt == "JPEG" else 1e-9)
    if orientation != 1:  # and ignoring the tag would have been visibly wrong
        if stored.shape == upright.shape:
            assert np.abs(stored.astype(int) - upright).mean() > 20


def test_float_images_are_refused_in_one_line(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(48, 64)).save(path)
    with pytest.raises(DataError) as err:
        read_image(path)
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg and "not supported" in msg


@pytest.mark.parametrize(
    "name,data", [("cut.jpg", "jpeg-truncated"), ("junk.png", b"not an image at all"), ("empty.gif", b"")]
)
def test_broken_files_name_the_file(tmp_path, name, data):
    if data == "jpeg-truncated":
        data = _save(Image.fromarray(_scene()), "JPEG")[:200]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError) as err:
        read_image(path)
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg and "BytesIO" not in msg
