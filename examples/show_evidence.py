"""Save image | SP-CAM | CAM | pseudo-labels | ground truth side by side for a few images.

    python examples/show_evidence.py PROJECT_DIR OUT.png [--images 0 1 2 3]

Needs a project on which `spn-napari pseudo-labels` ran. A quick look without napari.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

import spn_napari as spn
from spn_napari.predict.export import label_palette
from spn_napari.project import kinds


def _heat(m: np.ndarray) -> np.ndarray:
    m = np.clip(m / max(float(m.max()), 1e-6), 0, 1)
    return (np.stack([m, m ** 2, 1 - m], -1) * 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project")
    ap.add_argument("out")
    ap.add_argument("--images", type=int, nargs="+", default=[0, 1, 2, 3])
    args = ap.parse_args()
    project = spn.Project(args.project)
    pal = np.array(label_palette(project.colors), np.uint8).reshape(256, 3)
    rows = []
    for i in args.images:
        info = project.images[i]
        c = info.tags[0] if info.tags else 0
        labels = project.read(kinds.pseudo_labels("sp-cam"), i) if project.artifact(kinds.pseudo_labels("sp-cam")) else np.zeros((info.height, info.width), np.uint8)
        gt = project.ground_truth(i)
        tiles = [project.image(i), _heat(spn.evidence_maps(project, i, "sp-cam")[c]),
                 _heat(spn.evidence_maps(project, i, "cam")[c]), pal[labels],
                 pal[gt] if gt is not None else np.zeros_like(pal[labels])]
        rows.append(np.concatenate(tiles, 1))
    width = max(r.shape[1] for r in rows)
    Image.fromarray(np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
