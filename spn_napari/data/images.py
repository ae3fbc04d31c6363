"""Pixel decoding: any image file a user is likely to have → (H, W, 3) uint8; masks → (H, W) uint8.

Readers only check a folder's structure; this module is where pixels are decoded, one file at a
time, so every decoding failure (truncated, not an image, wrong size) becomes one
:class:`~spn_napari.errors.DatasetError` line naming the file and the fix. Pillow's own exceptions
never escape.

Pillow's decompression-bomb guard (~89 M px by default) is raised to :data:`MAX_PIXELS` when this
module is imported, so large microscopy or satellite images open; above that we refuse ourselves.
EXIF orientation is ignored on purpose: masks are aligned with the stored pixels, not the rotated view.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from spn_napari.errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MAX_PIXELS = 1_000_000_000  # larger images are refused with a clear error, not a Pillow bomb error

if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow errors only above 2x this; we check MAX_PIXELS first

_IMAGE_FIX = "replace it with a valid PNG/JPEG/TIFF or remove it (and its labels.csv line)"
_MASK_FIX = "replace it with a palette or grayscale PNG of class values, or delete it"


def is_image_file(path: Path) -> bool:
    """True when the file name ends with one of :data:`IMAGE_SUFFIXES` (any case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _reason(exc: BaseException) -> str:
    """A short one-line reason from a Pillow/OS exception (Pillow's messages may repeat the path)."""
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a folder"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image file Pillow recognises"
    if isinstance(exc, Image.DecompressionBombError):
        return f"over the {MAX_PIXELS:,}-pixel limit"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def _open(path: Path, what: str, fix: str) -> Image.Image:
    """Open and fully decode ``path`` (``.load()`` detects truncation); DatasetError on any failure."""
    img: Image.Image | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise DatasetError(
                    f"{path}: {what} is {w}x{h} = {w * h:,} pixels, over the {MAX_PIXELS:,} limit"
                    f" — split it into tiles or downscale it."
                )
            img.load()
        return img
    except BaseException as exc:
        if img is not None:
            img.close()
        if isinstance(exc, (DatasetError, MemoryError)) or not isinstance(exc, Exception):
            raise
        # Pillow raises OSError, SyntaxError, ValueError, EOFError, zlib.error, struct.error...
        raise DatasetError(f"{path}: cannot read this {what} ({_reason(exc)}) — {fix}.") from exc


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to (H, W, 3) uint8 (see :func:`load_image` for the rules)."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    elif mode in ("PA", "RGBa", "La"):
        img = img.convert("RGBA" if mode != "La" else "LA")
        mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy()
    if mode in ("RGBA", "LA"):
        a = np.asarray(img, dtype=np.uint16)
        alpha = a[..., -1:]
        rgb = (a[..., :-1] * alpha + 127) // 255  # composite on black, rounded
        rgb = rgb.astype(np.uint8)
        return np.repeat(rgb, 3, axis=2) if mode == "LA" else rgb
    if mode == "1":
        gray = np.asarray(img, dtype=bool).astype(np.uint8) * 255
    elif mode == "L":
        gray = np.asarray(img, dtype=np.uint8)
    elif mode.startswith("I"):  # I;16, I;16B, I;16L, I;16N, I (int32): 16-bit range
        v = np.clip(np.asarray(img).astype(np.int64), 0, 65535)
        gray = ((v * 255 + 32767) // 65535).astype(np.uint8)
    elif mode == "F":
        gray = _float_to_uint8(np.asarray(img, dtype=np.float64))
    else:  # CMYK, YCbCr, LAB, HSV...: Pillow knows the colour transform
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    return np.repeat(gray[..., None], 3, axis=2)


def _float_to_uint8(v: np.ndarray) -> np.ndarray:
    """Floats → uint8: clip to [0, 1] when max <= 1, else min-max stretch; NaN → 0."""
    v = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
    hi = float(v.max()) if v.size else 0.0
    if hi <= 1.0:
        v = np.clip(v, 0.0, 1.0)
    else:
        lo = float(v.min())
        v = (v - lo) / (hi - lo)
    return np.rint(v * 255.0).astype(np.uint8)


def load_image(path: Path) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB, converting rather than refusing.

    Conversions: grayscale (L) and 1-bit (0/255) are repeated over 3 channels; RGBA/LA/PA are
    composited on black (``round(c * a / 255)``) and the alpha dropped; palette images use their
    palette colours; 16-bit (I;16*, I) values are scaled by 255/65535 and rounded (I is clipped to
    [0, 65535] first); float (F) is clipped to [0, 1] when its max is <= 1, else min-max stretched,
    then ×255 and rounded; other modes (CMYK, YCbCr...) go through Pillow's RGB conversion.
    Multi-frame files give their first frame. Raises DatasetError naming ``path`` when it cannot
    be decoded (missing, truncated, not an image, over :data:`MAX_PIXELS`).
    """
    path = Path(path)
    img = _open(path, "image", _IMAGE_FIX)
    try:
        return _to_rgb(img)
    except (ValueError, OSError) as exc:
        raise DatasetError(f"{path}: cannot read this image ({_reason(exc)}) — {_IMAGE_FIX}.") from exc
    finally:
        img.close()


def as_rgb(array: np.ndarray) -> np.ndarray:
    """An image already in memory (a napari layer's data, a numpy array) -> (H, W, 3) uint8, by
    :func:`load_image`'s rules: (H, W) or (H, W, 1) is gray (uint8 as is, 16-bit and wider
    integers scaled by 255/65535, floats clipped to [0, 1] or stretched, bool 0/255); (H, W, 3)
    is RGB and (H, W, 4) RGBA, composited on black. Colour arrays that are not uint8 are
    converted as floats are. Other shapes raise ValueError naming the shape."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        if a.dtype.kind == "f":
            gray = _float_to_uint8(a.astype(np.float64))
        elif a.dtype.kind in "iu" and a.dtype != np.uint8:
            gray = ((np.clip(a.astype(np.int64), 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
        else:
            gray = a.astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise ValueError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4); got shape {a.shape}")
    if a.dtype != np.uint8:
        a = _float_to_uint8(a.astype(np.float64))
    return _to_rgb(Image.fromarray(np.ascontiguousarray(a)))  # RGB or RGBA by its channels


def load_mask(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a label mask to (H, W) uint8 class values (0 background, i class i, 255 ignore).

    Palette PNGs (VOC SegmentationClass) give their palette indices, not colours; L gives its
    values; 1-bit gives 0/1; 16-bit gives its values (all must be <= 255); LA uses L; RGB(A) is
    accepted only when gray (R == G == B). ``shape`` is the image's (H, W): a mask of another
    size raises DatasetError naming both sizes; None skips the check. Any undecodable file raises
    DatasetError naming ``path``.
    """
    path = Path(path)
    img = _open(path, "mask", _MASK_FIX)
    try:
        if shape is not None and (img.height, img.width) != tuple(shape):
            raise DatasetError(
                f"{path}: mask is {img.width}x{img.height} (WxH) but its image is "
                f"{shape[1]}x{shape[0]} — save the mask at the image's size."
            )
        mode = img.mode
        if mode == "P":
            return np.asarray(img, dtype=np.uint8).copy()
        if mode == "1":
            return np.asarray(img, dtype=bool).astype(np.uint8)
        if mode in ("L", "LA"):
            a = np.asarray(img, dtype=np.uint8)
            return (a[..., 0] if a.ndim == 3 else a).copy()
        if mode.startswith("I"):
            v = np.asarray(img).astype(np.int64)
            if v.size and (v.min() < 0 or v.max() > 255):
                raise DatasetError(
                    f"{path}: mask values span {v.min()}..{v.max()}, outside 0..255"
                    f" — save class values (0 background, 255 ignore) as an 8-bit PNG."
                )
            return v.astype(np.uint8)
        if mode in ("RGB", "RGBA"):
            a = np.asarray(img, dtype=np.uint8)
            if (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all():
                return a[..., 0].copy()
        raise DatasetError(
            f"{path}: mask is a {mode} colour image, so its class values are unknown"
            f" — save it as a palette or grayscale PNG whose values are class indices."
        )
    finally:
        img.close()
