"""A project's labels as numpy arrays: what to hand to your own training code.

    python examples/labels_to_numpy.py PROJECT_DIR OUT.npz [--kind pseudo/sp-cam|round/2/labels]

Without --kind these are the current labels: the current round's, with every correction a person
made painted over them (what napari shows and `spn-napari export` writes). Each image's mask is
(H, W) uint8: value c + 1 is class c of ``classes``; 0 is background (or "no label" in a project
made with --no-background); 255 is void. The .npz holds one array per image name plus the class
names (key ``__classes__``, value order); images differ in size, so they are not stacked.
"""

from __future__ import annotations

import argparse

import numpy as np

import spn_napari as spn
from spn_napari.labels import labels_reader


def project_labels(project: spn.Project, kind: str | None = None) -> dict[str, np.ndarray]:
    """{image name: (H, W) uint8 labels} of artifact ``kind`` (None: the current labels)."""
    read = labels_reader(project, kind)
    return {info.name: read(i) for i, info in enumerate(project.images)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project")
    ap.add_argument("out")
    ap.add_argument("--kind", default=None, help="an artifact such as pseudo/sp-cam (default: the current labels)")
    args = ap.parse_args(argv)
    project = spn.Project(args.project)
    labels = project_labels(project, args.kind)
    np.savez_compressed(args.out, **{"__classes__": np.array(project.label_names()), **labels})
    sizes = {m.shape for m in labels.values()}
    print(f"{len(labels)} masks ({len(sizes)} different sizes), classes {project.label_names()} -> {args.out}")


if __name__ == "__main__":
    main()
