"""SPN variants on real photos: SP-CAM and CAM mIoU of lite0 SPNs trained from the feature cache.

    python benchmarks/spn_variants.py PROJECT [--variant z=256,k=256,kernel=1 ...] [--epochs 20]
                                      [--lr 1e-3] [--sides 256,336,432] [--json]

PROJECT: a project with superpixels and ground truth whose lite0 maps are cached at ``--sides``
(e.g. the one `benchmarks/real_photos.py` leaves in runs/real_photos/project). Each variant is
an SPN built with ``LiteEncoder(z_channels=z, decoder_channels=k, kernel=kernel)`` and trained
with the engine's loss and schedule (AdamW, one cycle, batches of 8 at one random side) on
every image held in memory — the in-memory loop lets several variants run in the time of one
`train-spn`. Evidence is then taken at the middle side, as `pseudo-labels` does, and labelled
with the project's rule (no background: the best of each image's tags by max-normalised score).

This is how the lite0 defaults (1×1 extra conv and upsampler, widths) were chosen; that run
printed its figures without JSON, so docs/real-photos.md shows none until it is rerun with --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from spn_napari.batches import collate
from spn_napari.data.transforms import superpixel_canvas
from spn_napari.evaluate import score_labels
from spn_napari.evidence.cam import paint_superpixels, threshold_maps, upsample_cam
from spn_napari.evidence.features import read_features
from spn_napari.evidence.pseudo_labels import image_evidence
from spn_napari.models.encoders import LiteEncoder
from spn_napari.models.spn import SPN, SPNConfig, spn_loss
from spn_napari.project import kinds
from spn_napari.project.kinds import feature_maps
from spn_napari.project.store import Project
from spn_napari.runtime import default_threads
from spn_napari.train import seed_everything

from _shared import command_line, cpu_model, write_results  # benchmarks/ is on sys.path


def _variant(text: str) -> dict:
    out = {"z": 256, "k": 256, "kernel": 1}
    for part in filter(None, text.split(",")):
        key, value = part.split("=")
        out[key.strip()] = int(value)
    return out


def run_variant(project: Project, items: dict, v: dict, *, epochs: int, lr: float, seed: int = 0) -> dict:
    """Train one variant on the in-memory ``items`` ({side: [item per image]}) and score it."""
    seed_everything(seed)
    enc = LiteEncoder(z_channels=v["z"], decoder_channels=v["k"], kernel=v["kernel"])
    model = SPN(SPNConfig(n_classes=len(project.classes), encoder="lite0"), encoder=enc)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=lr, weight_decay=1e-4)
    n, bs, sides = len(project), 8, sorted(items)
    steps = epochs * (n // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = rng.permutation(n)
        for b in range(n // bs):
            side = int(rng.choice(sides))
            batch = collate([items[side][j] for j in perm[b * bs:(b + 1) * bs]])
            loss = spn_loss(model(None, batch["sp"], batch["n"], backbone=batch["f"]), batch["target"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    train_s = time.perf_counter() - t0
    model.eval()
    mid = sides[len(sides) // 2]
    bg = project.has_background
    ev = [image_evidence(model, None, project.read(kinds.SUPERPIXELS, i), [mid], torch.device("cpu"),
                         {mid: items[mid][i]["f"]}) for i in range(n)]
    sp_cam = score_labels(project, lambda i: threshold_maps(
        paint_superpixels(ev[i].sp_scores, project.read(kinds.SUPERPIXELS, i)), project.images[i].tags, background=bg))
    cam = score_labels(project, lambda i: threshold_maps(
        upsample_cam(ev[i].cam, project.images[i].height, project.images[i].width), project.images[i].tags,
        background=bg))
    return {**v, "epochs": epochs, "lr": lr, "train_s": train_s,
            "trainable_parameters": sum(p.numel() for p in model.trainable_parameters()),
            "sp_cam_miou": sp_cam["miou"], "sp_cam_mean_class_accuracy": sp_cam["mean_class_accuracy"],
            "cam_miou": cam["miou"], "cam_mean_class_accuracy": cam["mean_class_accuracy"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project")
    ap.add_argument("--variant", action="append", default=None, metavar="z=…,k=…,kernel=…")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sides", default="256,336,432")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", default=None, help="also write the results as JSON here "
                    "(e.g. benchmarks/results/spn_variants.json)")
    a = ap.parse_args()
    default_threads()
    project = Project(a.project)
    sides = [int(s) for s in a.sides.split(",")]
    missing = [s for s in sides if not project.artifact(feature_maps("lite0", s))]
    if missing:
        print(f"{a.project}: no lite0 maps cached at sides {missing} — train an SPN with "
              f"`spn-napari train-spn {a.project} --scales {a.sides}` first.", file=sys.stderr)
        return 2
    tags = torch.from_numpy(project.tag_matrix())
    items: dict[int, list] = {s: [] for s in sides}
    for i in range(len(project)):
        sp = project.read(kinds.SUPERPIXELS, i)
        for s in sides:
            spc, n = superpixel_canvas(sp, s)
            items[s].append({"f": read_features(project, feature_maps("lite0", s), i), "sp": spc, "n": n,
                             "target": tags[i], "index": i})
    rows = [run_variant(project, items, _variant(v), epochs=a.epochs, lr=a.lr)
            for v in (a.variant or ["z=256,k=256,kernel=1"])]
    res = {"project": a.project, "cpu": cpu_model(), "sides": sides, "epochs": a.epochs, "rows": rows}
    if a.out:
        write_results(a.out, {**res, "command": command_line()})
    if a.json:
        print(json.dumps(res))
        return 0
    print(f"{a.project}: {len(project)} images, sides {sides}, {a.epochs} epochs, {cpu_model()}")
    print(f"{'z':>5s} {'k':>5s} {'kernel':>6s} {'params':>9s} {'SP-CAM':>7s} {'mAcc':>6s} {'CAM':>7s} {'mAcc':>6s} {'train s':>8s}")
    for r in rows:
        print(f"{r['z']:5d} {r['k']:5d} {r['kernel']:6d} {r['trainable_parameters']:9d} {r['sp_cam_miou']:7.3f} "
              f"{r['sp_cam_mean_class_accuracy']:6.3f} {r['cam_miou']:7.3f} {r['cam_mean_class_accuracy']:6.3f} "
              f"{r['train_s']:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
