"""SP-CAM time for ONE 500x500 image with the small encoder: image + superpixels in -> mask out.

    python benchmarks/bench_sp_cam.py [--device cpu|cuda|auto] [--repeat 5] [--multi-scale]
                                      [--threads N] [--size 500] [--json]

Why: the design's interactive goal is that producing one image's SP-CAM mask takes at most
1.5 s on a CPU (VOC-sized image, small encoder), so a user correcting labels in the GUI never
waits long for a recomputed mask. This script prints the goal and measured / goal.

What is timed (median of --repeat runs after one warm-up run, CUDA synchronised; the total and
the instrumented breakdown run alternately, so machine load affects both alike):
  total        ``spn_napari.evidence.pseudo_labels.image_evidence`` for the image (forward at the inference
               side(s), superpixel pooling at full image resolution, SP-CAM scores, image
               probabilities and the CAM baseline, max over sides), then
               ``spn_napari.evidence.cam.paint_superpixels`` and ``threshold_maps`` over the image's tags
               -- exactly what ``pseudo-labels`` does per image, minus the store reads/writes.
  breakdown    the same calls, timed part by part in an instrumented copy of image_evidence
               (so its sum is close to, not identical with, the total):
                 forward          fit_to_canvas (resize + pad) and ``model.features``
                 pooling+scores   superpixel canvas, ``superpixel_pool``, ``superpixel_scores``,
                                  probabilities, CAM, max over sides, copy to numpy
                 paint+threshold  ``paint_superpixels`` + ``threshold_maps``
  slic         ``spn_napari.evidence.superpixels.slic_labels`` with the default SuperpixelConfig, reported
               separately: superpixels are computed once per image and cached in the project.

Setup: ``build_spn(4, encoder="small")`` in eval mode with random weights (weights do not change
the time); the inference side is the middle of ``auto_scales([size])`` as evidence/pseudo_labels.py picks it
(``--multi-scale``: all six sides); the image is ``generate_demo_image(default_rng(0), size)``
cropped / edge-padded to exactly size x size. Torch threads default to all cores, as the
``pseudo-labels`` command sets them (``--threads`` overrides).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F

from spn_napari.data.synthetic import generate_demo_image
from spn_napari.data.transforms import auto_scales, fit_to_canvas
from spn_napari.evidence.cam import paint_superpixels, threshold_maps
from spn_napari.evidence.pseudo_labels import image_evidence
from spn_napari.evidence.superpixels import SuperpixelConfig, slic_labels
from spn_napari.models.spn import build_spn
from spn_napari.ops import label_canvas, superpixel_pool

from _shared import command_line, cpu_model, write_results  # benchmarks/ is on sys.path

GOAL_S = 1.5  # per image, CPU, small encoder, 500x500


def machine(device: torch.device) -> dict:
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def resolve(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def square_image(size: int) -> tuple[np.ndarray, list[int]]:
    """The demo image (random side in 0.8..1.2 x size) cropped / edge-padded to size x size."""
    image, _, tags = generate_demo_image(np.random.default_rng(0), size=size)
    image = image[:size, :size]
    ph, pw = size - image.shape[0], size - image.shape[1]
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return np.ascontiguousarray(image), list(tags)


def mask_total(model, image, sp, sides, device, tags) -> np.ndarray:
    """What is timed as 'total': image_evidence + paint + threshold."""
    ev = image_evidence(model, image, sp, sides, device)
    return threshold_maps(paint_superpixels(ev.sp_scores, sp), tags, 0.5)


@torch.no_grad()
def mask_parts(model, image, sp, sides, device, tags) -> tuple[np.ndarray, dict]:
    """image_evidence's body with perf_counter around its parts (same calls, same order)."""
    t = {"forward": 0.0, "pooling+scores": 0.0, "paint+threshold": 0.0}
    t0 = time.perf_counter()
    sp_canvas, n = label_canvas(sp, device)
    side_full = sp_canvas.shape[-1]
    sync(device)
    t["pooling+scores"] += time.perf_counter() - t0
    scores, cams, probs = [], [], []
    for side in sides:
        t0 = time.perf_counter()
        x, _, _ = fit_to_canvas(image, None, side)
        z, feat = model.features(x[None].to(device))
        sync(device)
        t1 = time.perf_counter()
        t["forward"] += t1 - t0
        if feat.shape[-1] > side_full:
            feat = F.interpolate(feat, size=(side_full, side_full), mode="bilinear", align_corners=False)
        pooled = superpixel_pool(feat.float(), sp_canvas, [n])
        scores.append(model.superpixel_scores(pooled))
        probs.append(torch.sigmoid(model.top(pooled.mean(0, keepdim=True)))[0])
        cams.append(model.cam(z.float())[0])
        sync(device)
        t["pooling+scores"] += time.perf_counter() - t1
    t0 = time.perf_counter()
    grid = max(c.shape[-1] for c in cams)
    cam = torch.stack([F.interpolate(c[None], size=(grid, grid), mode="bilinear", align_corners=False)[0]
                       for c in cams]).amax(0)
    sp_scores = torch.stack(scores).amax(0).cpu().numpy()
    cam.cpu().numpy()
    torch.stack(probs).amax(0).cpu().numpy()
    t1 = time.perf_counter()
    t["pooling+scores"] += t1 - t0
    mask = threshold_maps(paint_superpixels(sp_scores, sp), tags, 0.5)
    t["paint+threshold"] += time.perf_counter() - t1
    return mask, t


def timed(fn, device: torch.device) -> float:
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--repeat", type=int, default=5, help="timed runs (median reported)")
    p.add_argument("--multi-scale", action="store_true", help="all six inference sides, not the middle one")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--size", type=int, default=500, help="image side (the goal is for 500)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--out", default=None,
                   help="also write the results as JSON here (e.g. benchmarks/results/sp_cam.json)")
    a = p.parse_args(argv)
    if a.repeat < 1:
        p.error("--repeat: must be at least 1")
    device = resolve(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here -- use --device cpu")
    torch.set_num_threads(a.threads or max(1, os.cpu_count() or 1))

    image, tags = square_image(a.size)
    sp_cfg = SuperpixelConfig()
    sp = slic_labels(image, sp_cfg)  # warm-up (and the superpixels used below)
    slic_s = [timed(lambda: slic_labels(image, sp_cfg), torch.device("cpu")) for _ in range(a.repeat)]

    model = build_spn(4, encoder="small").to(device).eval()
    scales = sorted(auto_scales([a.size]))
    sides = scales if a.multi_scale else [scales[len(scales) // 2]]

    ref = mask_total(model, image, sp, sides, device, tags)  # warm-up
    mask, _ = mask_parts(model, image, sp, sides, device, tags)  # warm-up of the instrumented copy
    assert np.array_equal(mask, ref), "instrumented copy disagrees with image_evidence"
    sync(device)
    total_s, parts = [], []
    for _ in range(a.repeat):  # interleaved, so a busy shared machine slows both alike
        total_s.append(timed(lambda: mask_total(model, image, sp, sides, device, tags), device))
        parts.append(mask_parts(model, image, sp, sides, device, tags)[1])
    part_med = {k: statistics.median(p_[k] for p_ in parts) for k in parts[0]}

    total = statistics.median(total_s)
    res = {
        "machine": machine(device), "image": [a.size, a.size], "encoder": "small", "sides": sides,
        "n_superpixels": int(sp.max()) + 1, "superpixel_config": asdict(sp_cfg),
        "tags": tags, "repeat": a.repeat,
        "total_s": total, "total_min_s": min(total_s),
        "breakdown_s": part_med, "breakdown_sum_s": sum(part_med.values()),
        "slic_s": statistics.median(slic_s), "slic_min_s": min(slic_s),
        "goal_s": GOAL_S, "ratio_to_goal": total / GOAL_S,
        "mask_labelled_fraction": float((ref > 0).mean()),
    }
    if a.out:
        write_results(a.out, {**res, "command": command_line()})
    if a.json:
        print(json.dumps(res))
        return
    m = res["machine"]
    dev = f"{device} ({m['gpu']})" if "gpu" in m else str(device)
    print(f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['torch_threads']} threads; "
          f"device {dev}")
    print(f"image {a.size}x{a.size}, {res['n_superpixels']} superpixels, small encoder (random weights, eval), "
          f"sides {sides}, median of {a.repeat} after 1 warm-up")
    print(f"  {'step':<34}{'median s':>10}{'min s':>9}")
    print(f"  {'SP-CAM total (image+sp -> mask)':<34}{total:>10.3f}{min(total_s):>9.3f}")
    for k, v in part_med.items():
        print(f"  {'  ' + k:<34}{v:>10.3f}{min(p_[k] for p_ in parts):>9.3f}")
    print(f"  {'  (sum of parts)':<34}{res['breakdown_sum_s']:>10.3f}")
    print(f"  {'SLIC superpixels (once, cached)':<34}{res['slic_s']:>10.3f}{res['slic_min_s']:>9.3f}")
    print(f"goal: SP-CAM total <= {GOAL_S:.2f} s on CPU -> measured/goal = {res['ratio_to_goal']:.2f}"
          + ("" if device.type == "cpu" else "  (goal is for CPU; this run used a GPU)"))


if __name__ == "__main__":
    main()
