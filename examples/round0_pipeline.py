"""Round 0 from Python: a data set folder in, SP-CAM pseudo-label masks out.

    python examples/round0_pipeline.py DATASET_DIR PROJECT_DIR [--epochs 30]

DATASET_DIR is a generic folder (classes.txt, images/, labels.csv[, masks/]) or a VOC2012 folder;
make one with `spn-napari demo-data DATASET_DIR`. The same steps as the CLI, through the API.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import spn_napari as spn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("project", type=Path)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    project = spn.Project(args.project) if spn.is_project(args.project) else spn.init_project(args.project, args.dataset)
    print(f"{len(project)} images, classes: {', '.join(project.classes)}")
    spn.run(spn.compute_superpixels(project))

    def show(ev: spn.Event) -> None:
        if ev.event == "epoch":
            print(f"epoch {ev.step}/{ev.total}  loss {ev.data['loss']:.3f}  tag accuracy {ev.data['tag_accuracy']:.2f}")

    spn.run(spn.train_spn(project, spn.TrainConfig(epochs=args.epochs, device=args.device)), show)
    for method in ("cam", "sp-cam"):
        spn.run(spn.make_pseudo_labels(project, spn.PseudoLabelConfig(method=method, device=args.device)))
        if project.has_ground_truth:
            print(f"{method}: mIoU {spn.evaluate_labels(project, f'pseudo/{method}')['miou']:.3f}")
    out = spn.export_labels(project, args.project.parent / f"{args.project.name}-masks", kind="pseudo/sp-cam")
    print(f"SP-CAM masks written to {out}")


if __name__ == "__main__":
    main()
