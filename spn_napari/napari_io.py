"""napari contributions without Qt: the project reader, the labels writer and the sample project
(a pretrained project shipped as package data, unpacked into a writable folder).

The reader opens a project folder (or its ``project.db``) as layers of its first image to
review; the dock widget (Plugins › SPN annotator) then browses, edits and trains. A folder that is
not a project is declined (``None``), as napari expects, so other readers can try it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["get_reader", "read_project_layers", "write_labels", "sample_project", "sample_dir", "unpack_sample",
           "SAMPLE_ARCHIVE", "layer_specs", "labels_style"]


def _project_root(path) -> Path | None:
    from .project.store import is_project
    if isinstance(path, (list, tuple)):
        path = path[0] if len(path) == 1 else None
    if path is None:
        return None
    p = Path(path)
    if p.name in ("project.db", "project.json"):
        p = p.parent
    return p if is_project(p) else None


def get_reader(path):
    """npe2 reader hook: a function for spn-napari projects, None for anything else."""
    root = _project_root(path)
    return None if root is None else (lambda _path: read_project_layers(root))


def evidence_limits(m: np.ndarray) -> tuple[float, float]:
    """Contrast limits of an evidence map: 0 to its peak (negative evidence shows as none)."""
    return 0.0, max(float(m.max()), 1e-6)


# Superpixel contours: 0 transparent, 1 white. An Image layer with fixed contrast limits, not a
# Labels layer: a read-only overlay needs no paint tools, and napari's vispy Labels layer rebuilds
# its colormap shader on every data change (a GLSL recompile per image switch, unless the dock
# blocks that napari internal) where an Image layer of the same dtype and limits only re-uploads
# its texture.
CONTOUR_COLORMAP = {"name": "spn contours", "colors": [[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]}

# Evidence (SP-CAM, CAM) over the photo, as light: the photo is dimmed where the class has
# little evidence and shows as it is where the evidence peaks. The map has no hue at all (black,
# transparent at the peak), so it never shares a hue with a class colour (the class palette has a
# yellow, an orange, a red: a coloured heat map read as a class), and it reads the same to
# colour-blind eyes, by lightness alone.
EVIDENCE_COLORMAP = {"name": "spn evidence", "controls": [0.0, 0.35, 0.7, 1.0],
                     "colors": [[0.0, 0.0, 0.0, 0.75], [0.0, 0.0, 0.0, 0.6], [0.0, 0.0, 0.0, 0.2],
                                [0.0, 0.0, 0.0, 0.0]]}

# The Unsure layer: white and black diagonal stripes where the evidence's best two tags are close,
# transparent elsewhere (values 0, 1 black, 2 white: see unsure_stripes). No hue, so it is never
# read as a class colour, and a pattern reads on every class colour and every photo.
UNSURE_COLORMAP = {"name": "spn unsure", "controls": [0.0, 0.5, 1.0],
                   "colors": [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.5], [1.0, 1.0, 1.0, 0.9]]}
STRIPE = 3  # pixels of each stripe of the Unsure layer


@lru_cache(maxsize=4)
def _stripes(shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool, True on every other diagonal stripe of :data:`STRIPE` pixels."""
    yy, xx = np.indices(shape)
    return ((yy + xx) // STRIPE) % 2 == 0


def unsure_stripes(mask: np.ndarray) -> np.ndarray:
    """(H, W) uint8 for :data:`UNSURE_COLORMAP`: 0 outside ``mask``, inside it 2 (white) and 1
    (black) in diagonal stripes; nonzero exactly where ``mask`` is."""
    on = np.asarray(mask).astype(bool)
    return np.where(on, np.where(_stripes(on.shape), 2, 1), 0).astype(np.uint8)

LABELS_OPACITY = 0.5  # filled; drawn as outlines (the dock's O key) the labels are opaque lines


def labels_style(project) -> dict:
    """A napari Labels layer's keyword arguments that show label values as the project's classes:
    each class's colour, value 0 transparent, and the class names as features (hovering a pixel
    names its class; no 'background' name in a project without one, where 0 is "no label")."""
    names = project.label_names()
    first = 0 if project.has_background else 1  # label value of names[0]
    colors = {0: "transparent", None: "transparent",
              **{c + 1: col for c, col in enumerate(project.colors)}}
    return {"colormap": colors, "features": {"index": list(range(first, first + len(names))), "class": names}}


def layer_specs(project, view, klass: int | None = None) -> list[tuple]:
    """napari LayerData tuples for one image view: image, superpixel contours, SP-CAM / CAM maps
    of class ``klass`` (0-based; default the image's tag with the most labelled area), the Unsure
    pixels (hidden at first) and the labels with the project's class names and colours
    (:func:`labels_style`)."""
    meta = {"spn_project": str(project.root), "spn_image": view.index}
    layers = [(view.image, {"name": "image", "rgb": True, "metadata": meta}, "image")]
    if view.edges is not None:
        layers.append((view.edges, {"name": "superpixels", "opacity": 0.5, "colormap": CONTOUR_COLORMAP,
                                    "contrast_limits": (0, 1), "metadata": meta}, "image"))
    tag = klass if klass is not None else (view.tags or (0,))[0]
    for method, maps in view.evidence.items():
        layers.append((maps[tag], {"name": method.upper(), "colormap": EVIDENCE_COLORMAP, "opacity": 1.0,
                                   "contrast_limits": evidence_limits(maps[tag]), "blending": "translucent",
                                   "visible": method == "sp-cam", "metadata": meta}, "image"))
    if view.unsure is not None:
        layers.append((unsure_stripes(view.unsure), {"name": "Unsure", "colormap": UNSURE_COLORMAP, "opacity": 0.8,
                                                      "contrast_limits": (0, 2), "visible": False, "metadata": meta},
                       "image"))
    layers.append((view.labels.copy(), {"name": "labels", "opacity": LABELS_OPACITY, **labels_style(project),
                                        "metadata": meta}, "labels"))
    return layers


def read_project_layers(root) -> list[tuple]:
    from .project.store import Project
    from .review.annotator import Annotator
    ann = Annotator(Project(root))
    first = ann.next_unreviewed(len(ann.project) - 1)
    return layer_specs(ann.project, ann.view(0 if first is None else first))


def write_labels(path: str, data, meta: dict) -> list[str]:
    """npe2 writer hook: a labels layer as a palette PNG mask (0 background or no label, i class i),
    coloured as a project's classes are (:func:`spn_napari.colours.class_colors`)."""
    from .colours import class_colors
    from .predict.export import label_palette, write_mask
    arr = np.asarray(data)
    if arr.max(initial=0) > 255 or arr.min(initial=0) < 0:
        raise ValueError(f"{path}: label values must lie in 0..255 to be saved as a PNG mask")
    path = path if path.lower().endswith(".png") else f"{path}.png"
    write_mask(path, arr.astype(np.uint8), label_palette(tuple(class_colors(254))))
    return [path]


SAMPLE_ARCHIVE = Path(__file__).parent / "sample" / "demo-project.zip"  # scripts/make_sample_project.py
SAMPLE_STAMP = "sample.sha256"  # in the unpacked project: the archive it came from


def sample_dir() -> Path:
    """Where the sample project is unpacked: ``$SPN_NAPARI_CACHE/sample-project`` (default
    ``~/.cache/spn-napari``), a folder the user can write to (corrections are saved there)."""
    import os
    return Path(os.environ.get("SPN_NAPARI_CACHE", Path.home() / ".cache" / "spn-napari")) / "sample-project"


def unpack_sample(root: Path, archive: Path = SAMPLE_ARCHIVE) -> Path:
    """Unpack the shipped sample project ``archive`` into ``root``, unless ``root`` already holds
    this archive's project (then it is kept as the user left it). A different archive (a newer
    package) or a half-unpacked folder is replaced. Returns ``root``."""
    import hashlib
    import os
    import shutil
    import zipfile

    from .errors import SpnError
    from .project.store import is_project
    if not archive.is_file():
        raise SpnError(f"{archive}: no sample project in this installation — make it with "
                       f"`python scripts/make_sample_project.py`, or open a project folder instead.")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    stamp = root / SAMPLE_STAMP
    if is_project(root) and stamp.is_file() and stamp.read_text().strip() == digest:
        return root
    tmp = root.with_name(f".{root.name}.unpacking-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp)
    (tmp / SAMPLE_STAMP).write_text(digest + "\n")  # written last: a complete project
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root


def sample_project() -> list[tuple]:
    """npe2 sample data: the small pretrained demo project shipped with the package (12 demo
    images, superpixels, an SPN with the demo's encoder, CAM and SP-CAM pseudo-labels; made by
    ``scripts/make_sample_project.py``), unpacked into :func:`sample_dir` and opened like a
    project folder. Nothing is trained in the viewer's process."""
    return read_project_layers(unpack_sample(sample_dir()))
