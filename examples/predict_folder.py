"""Segment a folder of new photos with a trained project, from Python (what `spn-napari predict` does).

    python examples/predict_folder.py PROJECT_DIR PHOTOS_DIR OUT_DIR [--round R] [--device auto]

The Segmenter is set up once (the current round's DecoupledNet, or the SPN before any round) and
predicts one photo after another: OUT_DIR/NAME.png is a palette mask at the photo's size, value c + 1
for class c of the project. The classes come from the model's own classifier (score > 0.5); pass
``tags=`` to ``predict`` when you know a photo's classes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import spn_napari as spn
from spn_napari.data.images import is_image_file, load_image
from spn_napari.predict.export import write_mask


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project")
    ap.add_argument("photos", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--round", type=int, default=None)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    seg = spn.Segmenter.from_project(args.project, round_no=args.round, device=args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    photos = sorted(p for p in args.photos.iterdir() if is_image_file(p))
    for path in photos:
        mask = seg.predict(load_image(path))  # (H, W) uint8
        write_mask(args.out / f"{path.stem}.png", mask, seg.palette)
        found = sorted({seg.classes[v - 1] for v in set(mask.ravel().tolist()) if 0 < v <= len(seg.classes)})
        print(f"{path.name}: {', '.join(found) or 'nothing found'}")
    print(f"{len(photos)} masks in {args.out} (round {seg.round})")


if __name__ == "__main__":
    main()
