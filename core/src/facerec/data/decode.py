"""Decode image bytes (JPEG, PNG, PGM/PPM, GIF, BMP, ...) to canonical tensors.

JPEG and PNG go through torchvision's libjpeg-turbo/libpng decoders (about 3x faster than PIL +
ToTensor for 112x112 faces and bit-identical); every other format, and files without an
extension (Yale faces are GIFs named ``subject01.happy``), is recognised by its content and
decoded with PIL. Whatever the source, the result is 8-bit RGB ``[3, H, W]`` the right way up:

* grayscale, grayscale + alpha, palette, CMYK (also Adobe's inverted CMYK JPEGs) -> RGB; alpha is
  dropped;
* 16-bit PNG and TIFF (and 32-bit integer TIFF) are scaled to 8 bits (``round(v / 257)``), never
  clipped;
* the EXIF orientation tag is applied (a photo taken sideways decodes upright);
* floating-point images (``F`` mode TIFF) have no agreed range and are refused with a one-line
  error naming the file, as are unreadable files.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Suffixes image folders/lists accept without sniffing (extension-less files are sniffed).
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".pnm", ".gif", ".bmp", ".tif", ".tiff", ".webp"}
)
_MAGICS = (
    JPEG_MAGIC,
    PNG_MAGIC,
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"P1",
    b"P2",
    b"P3",
    b"P4",
    b"P5",
    b"P6",
    b"II*\x00",
    b"MM\x00*",
    b"RIFF",
)


_OPS: object | None = None


def _image_ops():
    """torchvision's image codec ops (``torch.ops.image``), loaded without importing torchvision.

    ``import torchvision`` costs seconds (torchvision.ops pulls in torch._dynamo), which every
    ``facerun data`` call and DataLoader worker would pay; its codec library alone loads in ~15 ms.
    Falls back to ``torchvision.io`` (and then to PIL) where the library layout differs.
    """
    global _OPS
    if _OPS is None:
        import importlib.util
        import sys

        ops: object = False
        if "torchvision" not in sys.modules:
            spec = importlib.util.find_spec("torchvision")
            folder = Path(spec.origin).parent if spec is not None and spec.origin else None
            for lib in sorted(folder.glob("image*.so")) + sorted(folder.glob("image*.pyd")) if folder else []:
                try:
                    torch.ops.load_library(str(lib))
                    torch.ops.image.decode_jpeg.default  # noqa: B018  (raises if not registered)
                    ops = torch.ops.image
                    break
                except Exception:
                    continue
        if ops is False:
            try:
                import torchvision.io  # noqa: F401  (registers torch.ops.image)

                ops = torch.ops.image
            except Exception:
                ops = False
        _OPS = ops if ops is not False and _self_test(ops) else False
    return _OPS


def _self_test(ops) -> bool:
    """The ops take (data, mode, exif) / (image, quality) in the torchvision versions we allow;
    check once on a tiny image so a changed signature falls back to PIL instead of failing later."""
    try:
        img = torch.arange(3 * 8 * 8, dtype=torch.uint8).view(3, 8, 8)
        data = ops.encode_jpeg(img, 90)
        back = ops.decode_image(data, _RGB, False)
        return tuple(back.shape) == (3, 8, 8) and back.dtype == torch.uint8
    except Exception:
        return False


_RGB = 3  # torchvision ImageReadMode.RGB


def looks_like_image(head: bytes) -> bool:
    """True when the first bytes of a file carry a known image signature."""
    return any(head.startswith(m) for m in _MAGICS)


#: PIL modes holding more than 8 bits per sample, and the largest value of each.
_WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": None}


def _to_8bit(values: np.ndarray, top: int) -> np.ndarray:
    """Integer samples in 0..top -> uint8, rounded (65535 -> 255, 257 -> 1)."""
    v = values.astype(np.int64).clip(0, top)
    return ((v * 255 + top // 2) // top).astype(np.uint8)


def _pil_rgb(data: bytes, source: str) -> np.ndarray:
    """Any PIL-readable image -> uint8 RGB ``[H, W, 3]``, EXIF orientation applied."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as opened:
        opened.seek(0)  # first frame of an animated GIF / multi-page TIFF
        im = ImageOps.exif_transpose(opened) or opened
        mode = im.mode
        if mode in _WIDE_MODES:
            arr = np.asarray(im)
            top = _WIDE_MODES[mode] or (65535 if arr.size and int(arr.max()) > 255 else 255)
            gray = _to_8bit(arr, top)
            return np.repeat(gray[..., None], 3, axis=2)
        if mode == "F" or mode.startswith("RGB;16") or mode.startswith("RGBA;16"):
            raise ValueError(
                f"{mode} images (floating point or 16-bit colour PIL cannot scale) are not supported; "
                f"convert the file to 8- or 16-bit PNG"
            )
        return np.array(im.convert("RGB"), dtype=np.uint8)


def decode_uint8(data: bytes | bytearray | memoryview, source: str = "<bytes>") -> Tensor:
    """Image bytes -> uint8 tensor ``[3, H, W]`` RGB, upright. Raises DataError naming ``source``."""
    head = bytes(data[:8])
    try:
        ops = _image_ops() if head.startswith(JPEG_MAGIC) or head.startswith(PNG_MAGIC) else None
        if ops:
            buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            image = ops.decode_image(buf, _RGB, True)  # True: apply the EXIF orientation
            if image.dtype != torch.uint8:  # 16-bit PNG
                image = torch.from_numpy(_to_8bit(image.numpy(), 65535))
            return image
        arr = _pil_rgb(bytes(data), source)
        return torch.from_numpy(arr).permute(2, 0, 1)  # an HWC view, like torchvision's decoders
    except Exception as exc:  # any decoder failure is a corrupt input, named by its source
        kind = "JPEG" if head.startswith(JPEG_MAGIC) else "PNG" if head.startswith(PNG_MAGIC) else "image"
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if type(exc).__name__ == "UnidentifiedImageError":  # PIL's message names a BytesIO object
            detail = "not a recognised image format"
        raise DataError(f"cannot decode {kind} {source}: {detail}") from None


def to_canonical(images: Tensor, image_size: int | tuple[int, int] | None = None) -> Tensor:
    """uint8 ``[3,H,W]`` or ``[B,3,H,W]`` -> float in [0, 1], optionally resized (bilinear, antialiased)."""
    x = images.float().div_(255.0)
    if image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if tuple(x.shape[-2:]) != size:
            batched = x.dim() == 4
            x = F.interpolate(
                x if batched else x[None], size=size, mode="bilinear", align_corners=False, antialias=True
            ).clamp_(0.0, 1.0)
            x = x if batched else x[0]
    return x


def decode_image(
    data: bytes | bytearray | memoryview, source: str = "<bytes>", image_size: int | tuple[int, int] | None = None
) -> Tensor:
    """Image bytes -> canonical float image ``[3, H, W]`` RGB in [0, 1]."""
    return to_canonical(decode_uint8(data, source), image_size)


def read_bytes(path: str | Path, what: str = "image file") -> bytes:
    """The file's bytes; a missing or unreadable file is a one-line DataError naming ``what`` it is."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def read_image(path: str | Path, image_size: int | tuple[int, int] | None = None) -> Tensor:
    """Read and decode one image file to a canonical float image ``[3, H, W]``."""
    return decode_image(read_bytes(path), str(path), image_size)


def encode_jpeg(image: Tensor, quality: int = 95) -> bytes:
    """Canonical float ``[3,H,W]`` (or uint8) image -> JPEG bytes."""
    u8 = image if image.dtype == torch.uint8 else image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    if u8.shape[0] == 1:
        u8 = u8.expand(3, -1, -1)
    u8 = u8.cpu().contiguous()
    ops = _image_ops()
    if ops:
        return ops.encode_jpeg(u8, int(quality)).numpy().tobytes()
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(u8.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


__all__ = [
    "IMAGE_SUFFIXES",
    "looks_like_image",
    "read_bytes",
    "read_image",
    "decode_image",
    "decode_uint8",
    "to_canonical",
    "encode_jpeg",
]
