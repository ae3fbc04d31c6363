"""Demo data: cluttered images of four object classes, with image-level tags and ground truth.

Every object is a big, rounded, smoothly bounded *body* whose colour and texture come from one
distribution shared by all classes (warm, saturated mid-tones with a fine stripe or dot texture),
plus a small *discriminative part* (a disc inside the body, off its centre by up to 0.3 of the
semi-major axis, 8–15 % of the object's area) whose colour and pattern name the class. The body
alone says only "an object is here"; the part says which. A class activation map therefore fires
on the part only, while superpixel pooling (SP-CAM) spreads the evidence over the superpixels of
the body around it — the effect the SPN paper shows.

Backgrounds are desaturated, cool or grey, and cluttered (gradients, smooth colour noise, striped
patches, irregular blobs), never containing body-like or part-like shapes, so SLIC superpixels
follow object boundaries and the class evidence lies only in the objects.

:func:`generate_demo_sample` is the pure function behind everything (one image from one
``numpy.random.Generator``); :func:`write_demo_dataset` writes the generic data set layout::

    classes.txt            one class name a line
    images/demo_00000.png  RGB uint8, height and width each in [0.8, 1.2] * size
    labels.csv             header ``image,labels``; class names joined by ';'
    masks/demo_00000.png   uint8: 0 background, i = class i (1-based, order of classes.txt)
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from spn_napari.errors import DatasetError

CLASSES: tuple[str, ...] = ("bird", "fish", "flower", "beetle")
"""Class names; class ``i`` (0-based here) is label value ``i + 1`` in the masks."""

PART_SHARE_RANGE: tuple[float, float] = (0.08, 0.15)
"""Bounds on |part| / |body ∪ part| of every (unoccluded) object, as generated."""

SIZE_RANGE: tuple[float, float] = (0.8, 1.2)
"""Height and width are each ``round(size * U(*SIZE_RANGE))``."""

MULTI_OBJECT_RATE = 0.45
"""Share of images drawn with 2–3 objects (the rest have one)."""

# Discriminative parts: (hue, saturation, value) of the main colour, and the pattern drawn over it.
_PARTS: tuple[tuple[tuple[float, float, float], str], ...] = (
    ((0.15, 0.95, 1.00), "eye"),  # bird: yellow head with a black eye
    ((0.50, 1.00, 0.95), "stripes"),  # fish: cyan tail, navy bands across the body axis
    ((0.80, 0.9, 0.95), "rings"),  # flower: violet centre with thin white concentric rings
    ((0.33, 0.95, 0.85), "checker"),  # beetle: green shell, black checkerboard
)
_MIN_PART_RADIUS = 5.0  # px: parts at least ~10 px across when the object allows it
_SHARE_TARGET = (0.09, 0.14)  # sampled target, inside PART_SHARE_RANGE with a margin
_SINGLE_SCALE = (0.60, 0.80)  # body length / mean image side, one object
_MULTI_SCALE = (0.42, 0.56)  # the same with 2-3 objects
# Part centre along the major axis, in semi-major axes from the body's centre: inside the body,
# off-centre by up to 0.3 a. With the part at one end (0.72-0.82 a) and elongated bodies (aspect
# 0.55-0.75) half of the network's context around the part fell on background, and SP-CAM lost
# most of its lead over CAM in development runs on 200 images (not kept: the demo's current
# numbers are in benchmarks/results/demo.json, which `spn-napari demo runs/demo --results
# benchmarks/results/demo.json` writes). The demo is a convenience, not evidence.
_PART_OFFSET = (0.0, 0.3)
_ASPECT = (0.75, 0.95)  # semi-minor / semi-major axis of the body: rounded, not a perfect disc


@dataclass(frozen=True)
class DemoObject:
    """One object as generated, before any occlusion by objects drawn later.

    ``body`` and ``part`` are (H, W) bool masks of the whole image; the object is their union.
    """

    label: int  # 0-based class index into CLASSES
    body: np.ndarray
    part: np.ndarray


@dataclass(frozen=True)
class DemoSample:
    """One demo image: ``image`` (H, W, 3) uint8 RGB, ``mask`` (H, W) uint8 (0 background,
    ``i + 1`` class ``i``; the object drawn last wins), ``tags`` the sorted 0-based classes
    present in ``mask``, ``objects`` in drawing order."""

    image: np.ndarray
    mask: np.ndarray
    tags: list[int]
    objects: list[DemoObject]


def generate_demo_image(
    rng: np.random.Generator, size: int = 160
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One demo image: ``(image (H, W, 3) uint8, mask (H, W) uint8, tags)``.

    ``tags`` are sorted 0-based class indices into :data:`CLASSES`; they equal
    ``sorted(set(mask.flat) - {0})`` minus one. Pure: the result depends only on ``rng``'s state.
    """
    s = generate_demo_sample(rng, size)
    return s.image, s.mask, s.tags


def generate_demo_sample(rng: np.random.Generator, size: int = 160) -> DemoSample:
    """Like :func:`generate_demo_image`, also returning each object's unoccluded body and part."""
    if size < 32:
        raise ValueError(f"size={size}: demo images need size >= 32")
    lo, hi = SIZE_RANGE
    h, w = (int(round(size * rng.uniform(lo, hi))) for _ in range(2))

    img = _background(rng, h, w)  # (3, h, w) float32
    mask = np.zeros((h, w), np.uint8)
    placed = _place_objects(rng, h, w)
    for obj, box, body_paint, part_paint in placed:
        body, part = obj.body[box], obj.part[box]
        body_only = body & ~part
        for c in range(3):
            view = img[c][box]
            view[body_only] = body_paint[c][body_only]
            view[part] = part_paint[c][part]
        mask[box][body | part] = obj.label + 1

    # Mild per-image colour cast, blur and sensor noise.
    img = _blur(img, rng.uniform(0.4, 0.9))
    img *= (255.0 * rng.uniform(0.92, 1.08, size=3)).astype(np.float32)[:, None, None]
    img += 0.5
    np.clip(img, 0, 255, out=img)
    quant = img.astype(np.int16).transpose(1, 2, 0)
    amp = int(rng.integers(3, 8))  # uniform noise of +-amp grey levels: std 1-2 % of full range
    quant += rng.integers(-amp, amp + 1, size=quant.shape, dtype=np.int16)
    image = np.clip(quant, 0, 255).astype(np.uint8)
    tags = sorted(int(v) - 1 for v in np.unique(mask) if v != 0)
    return DemoSample(image=image, mask=mask, tags=tags, objects=[p[0] for p in placed])


def write_demo_dataset(
    out: Path | str,
    *,
    n: int = 200,
    size: int = 160,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``n`` demo images in the generic data set layout to the new folder ``out``.

    Image ``i`` is drawn from ``numpy.random.default_rng((seed, i))``, so it does not depend on
    ``n``. ``progress(i + 1, n)`` is called after each image. Returns ``out`` as a ``Path``.
    Raises :class:`DatasetError` if ``out`` exists and is not an empty folder.
    """
    out = Path(out)
    if n < 1:
        raise ValueError(f"n={n}: the demo data set needs at least one image")
    if seed < 0:
        raise ValueError(f"seed={seed}: the seed must be >= 0")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(
            f"{out}: already exists and is not an empty folder — choose a new folder or delete"
            " this one."
        )
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES), encoding="utf-8")
    rows = ["image,labels"]
    for i in range(n):
        image, mask, tags = generate_demo_image(np.random.default_rng((seed, i)), size)
        name = f"demo_{i:05d}.png"
        Image.fromarray(image, mode="RGB").save(out / "images" / name, compress_level=1)
        Image.fromarray(mask, mode="L").save(out / "masks" / name, compress_level=1)
        rows.append(f"{name},{';'.join(CLASSES[t] for t in tags)}")
        if progress is not None:
            progress(i + 1, n)
    (out / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out


# --------------------------------------------------------------------------- colours and noise


def _rgb(h: float, s: float, v: float) -> np.ndarray:
    """(3,) float32 RGB in [0, 1] from HSV (hue wraps, saturation and value are clipped)."""
    rgb = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return np.array(rgb, np.float32)


def _bg_colour(rng: np.random.Generator) -> np.ndarray:
    """Desaturated: grey of any tint, or a muted cool hue (never warm and saturated like bodies)."""
    if rng.random() < 0.4:
        return _rgb(rng.random(), rng.uniform(0.0, 0.1), rng.uniform(0.15, 0.95))
    return _rgb(rng.uniform(0.22, 0.7), rng.uniform(0.1, 0.35), rng.uniform(0.2, 0.9))


def _body_colour(rng: np.random.Generator) -> np.ndarray:
    """Shared by all classes: warm (red to orange), saturated mid-tones."""
    return _rgb(rng.uniform(-0.03, 0.08), rng.uniform(0.6, 0.9), rng.uniform(0.5, 0.85))


@lru_cache(maxsize=4096)
def _spline_matrix(n_out: int, n_grid: int) -> np.ndarray:
    """(n_out, n_grid) cubic B-spline interpolation weights from a grid with a 1-cell margin each
    side, scaled so a unit-variance white grid gives a field of about unit variance."""
    pos = 1.0 + (np.arange(n_out) + 0.5) / n_out * (n_grid - 3)
    x = np.abs(pos[:, None] - np.arange(n_grid)[None, :])
    wgt = np.where(x < 1, 2 / 3 - x**2 + x**3 / 2, np.where(x < 2, (2 - x) ** 3 / 6, 0.0))
    wgt /= np.sqrt((wgt**2).sum(1).mean())
    return wgt.astype(np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """(h, w) float32 smooth random field, about unit variance, about ``cells`` bumps across."""
    gh = max(2, int(round(cells * h / max(h, w)))) + 3
    gw = max(2, int(round(cells * w / max(h, w)))) + 3
    grid = rng.standard_normal(size=(gh, gw), dtype=np.float32)
    return _spline_matrix(h, gh) @ grid @ _spline_matrix(w, gw).T


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable 5-tap Gaussian blur of a (3, h, w) float32 image, edges replicated."""
    x = np.arange(-2, 3, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    p = np.pad(img, ((0, 0), (2, 2), (2, 2)), mode="edge")
    n, m = img.shape[1], img.shape[2]
    rows = sum(k[i] * p[:, i : i + n, :] for i in range(5))
    return sum(k[i] * rows[:, :, i : i + m] for i in range(5))


def _blend(img: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> None:
    """In place: img = img * (1 - alpha) + colour * alpha; img (3, h, w), alpha (h, w)."""
    for c in range(3):
        ch = img[c]
        ch += alpha * (colour[c] - ch)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(3, h, w) float32 in ~[0, 1]: gradient + colour noise + striped patches + blobs + grain."""
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    th = rng.uniform(0, 2 * np.pi)
    t = np.float32(np.cos(th)) * xx + np.float32(np.sin(th)) * yy
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    c0, c1 = _bg_colour(rng), _bg_colour(rng)
    img = np.empty((3, h, w), np.float32)  # channels first while compositing: faster broadcasts
    cells = int(rng.integers(3, 7))
    for c in range(3):
        img[c] = c0[c] + t * (c1[c] - c0[c]) + 0.06 * _smooth_noise(rng, h, w, cells)

    layers = ["stripes"] * int(rng.integers(1, 4)) + ["blob"] * int(rng.integers(2, 6))
    rng.shuffle(layers)
    for kind in layers:
        colour = _bg_colour(rng)
        field = _smooth_noise(rng, h, w, int(rng.integers(2, 5)))
        region = np.clip((field - rng.uniform(0.0, 0.8)) * rng.uniform(2.0, 6.0), 0.0, 1.0)
        if kind == "stripes":
            a = rng.uniform(0, np.pi)
            k = 2 * np.pi / rng.uniform(6.0, 24.0)
            phase = np.float32(k * np.cos(a)) * xx + np.float32(k * np.sin(a)) * yy
            phase += np.float32(rng.uniform(0, 2 * np.pi))
            on = np.cos(phase) > np.float32(np.cos(np.pi * rng.uniform(0.3, 0.6)))  # duty 30-60 %
            alpha = region * on * np.float32(rng.uniform(0.4, 0.8))
        else:
            alpha = region * np.float32(rng.uniform(0.5, 0.9))
        _blend(img, colour, alpha)

    grain = rng.random(size=(h, w), dtype=np.float32) - np.float32(0.5)
    img += grain * np.float32(np.sqrt(12.0) * rng.uniform(0.0, 0.05))  # std 0-5 %
    return img


# --------------------------------------------------------------------------- objects


def _place_objects(
    rng: np.random.Generator, h: int, w: int
) -> list[tuple[DemoObject, tuple[slice, slice], np.ndarray, np.ndarray]]:
    """Draw 1 (or 2–3) objects without covering any earlier object's part; the first always fits.

    Returns ``(object, box, body paint, part paint)`` per object in drawing order; paints are
    (3, box h, box w) float32 over the object's bounding box ``box``.
    """
    if rng.random() < MULTI_OBJECT_RATE:
        count = int(rng.integers(2, 4))
        classes = rng.choice(len(CLASSES), size=int(rng.integers(1, 3)), replace=False)
        extra = rng.choice(classes, size=count - len(classes))
        labels = [int(c) for c in classes] + [int(c) for c in extra]
        rng.shuffle(labels)
        scale = _MULTI_SCALE
    else:
        labels = [int(rng.integers(len(CLASSES)))]
        scale = _SINGLE_SCALE

    placed = []
    occupied = np.zeros((h, w), bool)
    guard = np.zeros((h, w), bool)  # earlier parts, grown by a few pixels
    for label in labels:
        for _ in range(40):
            shape = _object_shape(rng, h, w, scale)
            box, body, part, near_part = shape["box"], shape["body"], shape["part"], shape["guard"]
            area = body | part
            overlap = (area & occupied[box]).sum()
            if not (area & guard[box]).any() and overlap <= 0.1 * area.sum():
                break
        else:
            continue
        full_body, full_part = np.zeros((h, w), bool), np.zeros((h, w), bool)
        full_body[box], full_part[box] = body, part
        u, v = shape["u"], shape["v"]
        body_paint = _body_texture(rng, u / shape["a"], u, v, label)
        part_paint = _part_texture(rng, label, u - shape["pu"], v - shape["pv"], shape["r"])
        obj = DemoObject(label=label, body=full_body, part=full_part)
        placed.append((obj, box, body_paint, part_paint))
        occupied[box] |= area
        guard[box] |= near_part
    return placed


def _object_shape(
    rng: np.random.Generator, h: int, w: int, scale: tuple[float, float]
) -> dict[str, Any]:
    """Geometry of one object fully inside the image, computed on its bounding box only.

    Keys: ``box`` (slices), ``body``/``part`` (bool over the box), ``guard`` (the part grown by
    3 px: later objects must avoid it), ``u``/``v`` (box coordinates along/across the major axis,
    the part towards +u), ``a`` (semi-major axis), ``r``/``pu``/``pv`` (part radius and centre).
    """
    a = 0.5 * 0.5 * (h + w) * rng.uniform(*scale)  # semi-major axis
    a = min(a, 0.5 * min(h, w) / 1.2 - 2)
    b = a * rng.uniform(*_ASPECT)
    th = rng.uniform(0, 2 * np.pi)
    cos, sin = np.cos(th), np.sin(th)
    # Low-frequency wobble of the outline keeps it smooth but not a perfect ellipse.
    harm = [(k, rng.uniform(0.0, 0.06), rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4)]
    reach = a * 1.2 + 2  # the wobble stays under 1.18 a
    cx = rng.uniform(reach, max(reach, w - reach))
    cy = rng.uniform(reach, max(reach, h - reach))
    y0, y1 = max(0, int(cy - reach)), min(h, int(np.ceil(cy + reach)) + 1)
    x0, x1 = max(0, int(cx - reach)), min(w, int(np.ceil(cx + reach)) + 1)
    yy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    xx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)

    u = xx * np.float32(cos) + yy * np.float32(sin)  # along the major axis, part end at +a
    v = yy * np.float32(cos) - xx * np.float32(sin)
    un, vn = u / np.float32(a), v / np.float32(b)
    rho = np.hypot(un, vn)
    # Outline radius 1 + sum amp_k cos(k phi + ph_k) (phi the elliptic angle) = Re(z^k e^{i ph_k}).
    z = (un + 1j * vn) / np.maximum(rho, np.float32(1e-6))
    zk, edge = z, np.ones_like(rho)
    for k, amp, ph in harm:
        zk = zk * z if k > 2 else z * z
        edge += (zk * complex(amp * np.cos(ph), amp * np.sin(ph))).real.astype(np.float32)
    body = rho < edge

    # Part: a disc inside the body, off-centre towards +u, sized so |part| / |object| hits a target share.
    target = rng.uniform(*_SHARE_TARGET)
    target = min(max(target, _MIN_PART_RADIUS**2 / (a * b)), _SHARE_TARGET[1])
    pu = a * rng.uniform(*_PART_OFFSET)
    pv = b * rng.uniform(-0.1, 0.1)
    dist = np.hypot(u - np.float32(pu), v - np.float32(pv))
    r = np.sqrt(target * a * b)
    body_area = float(body.sum())
    for _ in range(8):
        part = dist < r
        share = part.sum() / max(body_area + float((part & ~body).sum()), 1.0)
        if abs(share - target) < 0.005:
            break
        r *= np.sqrt(target / max(share, 1e-3))
    lo, hi = PART_SHARE_RANGE
    if not lo <= share <= hi:  # rare on tiny images: bisect on the raster
        r_lo, r_hi = 0.5, a
        for _ in range(30):
            r = 0.5 * (r_lo + r_hi)
            part = dist < r
            share = part.sum() / max(float((body | part).sum()), 1.0)
            r_lo, r_hi = (r, r_hi) if share < target else (r_lo, r)
    return {
        "box": (slice(y0, y1), slice(x0, x1)),
        "body": body,
        "part": part,
        "guard": dist < r + 3,
        "u": u,
        "v": v,
        "a": a,
        "r": r,
        "pu": pu,
        "pv": pv,
    }


def _body_texture(
    rng: np.random.Generator, un: np.ndarray, u: np.ndarray, v: np.ndarray, label: int
) -> np.ndarray:
    """(3, h, w) body paint: one warm colour with a fine stripe or dot texture.

    The body is shared between classes: its colour is drawn alike for all of them, and its
    texture (stripes or dots) is shared by a pair of classes — a body says "one of these two",
    only the small part says which. ``u``/``v`` are pixel coordinates along/across the body
    axis, ``un`` is ``u`` over the semi-major axis (for a gentle shading along the body)."""
    base = _body_colour(rng)
    dark = base * np.float32(rng.uniform(0.7, 0.82))
    period = rng.uniform(3.0, 5.0)
    if label % 2 == 0:
        a = rng.uniform(0, np.pi)
        k = 2 * np.pi / period
        pat = np.cos(np.float32(k * np.cos(a)) * u + np.float32(k * np.sin(a)) * v) > 0
    else:
        gu, gv = (u / np.float32(period)) % 1.0 - 0.5, (v / np.float32(period)) % 1.0 - 0.5
        pat = np.hypot(gu, gv) < 0.28
    out = np.where(pat[None], dark[:, None, None], base[:, None, None])
    shade = 1.0 + np.float32(0.08) * np.tanh(un * np.float32(rng.uniform(-2, 2)))
    return (out * shade[None]).astype(np.float32)


def _part_texture(
    rng: np.random.Generator, label: int, du: np.ndarray, dv: np.ndarray, r: float
) -> np.ndarray:
    """(3, h, w) part paint around the part's centre: class colour and class pattern."""
    (hh, ss, vv), pattern = _PARTS[label]
    hue = hh + rng.uniform(-0.015, 0.015)
    base = _rgb(hue, ss - rng.uniform(0, 0.08), vv - rng.uniform(0, 0.1))
    dist = np.hypot(du, dv)
    if pattern == "eye":
        other = np.array([0.03, 0.03, 0.03], np.float32)
        pat = dist < max(1.6, 0.35 * r)
    elif pattern == "stripes":
        other = _rgb(0.62, 0.9, 0.3)
        pat = ((du / max(2.6, 0.45 * r)) % 1.0) < 0.5
    elif pattern == "rings":
        other = np.array([0.97, 0.97, 0.97], np.float32)
        pat = ((dist / max(2.8, 0.5 * r)) % 1.0) >= 0.65  # thin white rings
    else:  # checker
        other = np.array([0.05, 0.05, 0.05], np.float32)
        cell = max(2.0, 0.5 * r)
        pat = ((np.floor(du / cell) + np.floor(dv / cell)) % 2) == 1
    return np.where(pat[None], other[:, None, None], base[:, None, None]).astype(np.float32)
