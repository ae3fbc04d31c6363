"""Your own data set end to end from Python: tags in, corrected-and-refined masks out.

    python examples/own_dataset.py DATASET_DIR PROJECT_DIR [--no-background] [--epochs N]
        [--round-epochs N] [--encoder auto|lite0|vgg16|small] [--device auto]

DATASET_DIR is a generic folder (classes.txt, images/, labels.csv[, masks/]) or a VOC2012 folder;
`spn-napari demo-data DATASET_DIR` makes one. The steps are the CLI's, through the API: import,
superpixels, the SPN, SP-CAM pseudo-labels, one DecoupledNet round, and an export of the current
labels as palette PNGs to PROJECT_DIR-masks. Between the pseudo-labels and the round is where
people correct labels (napari, or `spn-napari import-corrections`). Re-running it reuses the
project and recomputes each step.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import spn_napari as spn
from spn_napari.project import kinds


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("project", type=Path)
    ap.add_argument("--no-background", action="store_true", help="every pixel belongs to a class (MSRC-like)")
    ap.add_argument("--epochs", type=int, default=None, help="SPN epochs (default: the encoder's)")
    ap.add_argument("--round-epochs", type=int, default=spn.RoundConfig.epochs)
    ap.add_argument("--encoder", default="auto")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)

    if spn.is_project(args.project):
        project = spn.Project(args.project)
    else:
        project = spn.init_project(args.project, args.dataset, background=not args.no_background)
    print(f"{len(project)} images, classes: {', '.join(project.classes)}")
    spn.run(spn.compute_superpixels(project))

    def show(ev: spn.Event) -> None:
        if ev.event == "epoch":
            print(f"epoch {ev.step}/{ev.total}  loss {ev.data['loss']:.3f}")

    spn.run(spn.train_spn(project, spn.TrainConfig(epochs=args.epochs, encoder=args.encoder, device=args.device)),
            show)
    spn.run(spn.make_pseudo_labels(project, spn.PseudoLabelConfig(method="sp-cam", device=args.device)))
    spn.run(spn.run_round(project, spn.RoundConfig(epochs=args.round_epochs, device=args.device)), show)
    if project.has_ground_truth:
        for kind in (kinds.pseudo_labels("sp-cam"), None):
            print(f"{kind or 'round ' + str(project.current_round())}: "
                  f"mIoU {spn.evaluate_labels(project, kind)['miou']:.3f}")
    out = spn.export_labels(project, args.project.parent / f"{args.project.name}-masks")
    print(f"masks written to {out}")


if __name__ == "__main__":
    main()
