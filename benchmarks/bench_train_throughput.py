"""Training throughput (images/s) of the SPN and of DecoupledNet, forward + backward + AdamW step.

    python benchmarks/bench_train_throughput.py [--device cpu|cuda|auto] [--side 160] [--batch 8]
                                                [--steps 10] [--encoder small|vgg16] [--json]

Why: a refinement round is mostly DecoupledNet training, and the round-time goal (≤ 5 min on the
200-image demo, 2 CPU cores) and the GPU speed-ups follow from these rates. On CUDA the script
also times AMP off (float32) against AMP on (bf16 where supported, else fp16) and prints the
ratio measured side by side in this one run.

What is timed: ``--steps`` optimiser steps (median per-step time after two warm-up steps, CUDA
synchronised) on one fixed random batch of ``--batch`` images of ``--side``² pixels — for the SPN
with ~100 superpixels per image (SLIC on a demo image, tiled), for DecoupledNet with one class
mask per image — through the same ``fit``-style step the trainers run: forward under the
trainers' autocast, loss, backward, AdamW. Data loading is excluded (it overlaps with training
when ``--workers`` > 0).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch

from spn_napari.data.synthetic import generate_demo_image
from spn_napari.data.transforms import fit_to_canvas
from spn_napari.evidence.superpixels import SuperpixelConfig, slic_labels
from spn_napari.models.decoupled import DecoupledNet, decoupled_loss
from spn_napari.models.spn import build_spn, spn_loss
from spn_napari.runtime import resolve_device
from spn_napari.train import autocast

from _shared import command_line, cpu_model, write_results  # benchmarks/ is on sys.path

C = 4


def batch(side: int, b: int, device: torch.device) -> dict:
    image, _, _ = generate_demo_image(np.random.default_rng(0), side)
    sp = slic_labels(image, SuperpixelConfig(n_segments=100))
    x, spc, n = fit_to_canvas(image, sp, side)
    g = torch.Generator().manual_seed(0)
    return {"x": x[None].repeat(b, 1, 1, 1).to(device), "sp": spc[None].repeat(b, 1, 1).to(device),
            "n": torch.full((b,), n, device=device),
            "target": (torch.rand(b, C, generator=g) > 0.5).float().to(device),
            "mask": torch.eye(C)[torch.arange(b) % C].to(device),
            "fg": (torch.rand(b, side, side, generator=g) > 0.7).long().to(device)}


def timed_steps(model, loss_of, steps: int, device: torch.device) -> float:
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4)
    model.train()
    times = []
    for k in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        loss = loss_of()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if k >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(encoder: str, side: int, b: int, steps: int, device: torch.device, amp: bool) -> dict:
    torch.manual_seed(0)
    data = batch(side, b, device)
    spn = build_spn(C, encoder=encoder).to(device)

    def spn_step():
        with autocast(device, amp):
            out = spn(data["x"], data["sp"], data["n"])
        return spn_loss(out, data["target"])

    dec = DecoupledNet.from_spn(spn).to(device)

    def dec_step():
        with autocast(device, amp):
            logits = dec(data["x"], data["mask"])
        return decoupled_loss(logits, data["fg"])

    t_spn = timed_steps(spn, spn_step, steps, device)
    t_dec = timed_steps(dec, dec_step, steps, device)
    return {"spn_images_per_s": b / t_spn, "decoupled_images_per_s": b / t_dec,
            "spn_step_s": t_spn, "decoupled_step_s": t_dec}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--side", type=int, default=160)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--encoder", default="small")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", default=None,
                    help="also write the results as JSON here (e.g. benchmarks/results/train_throughput.json)")
    a = ap.parse_args()
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(os.cpu_count() or 1)
    device = resolve_device(a.device)
    res = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
           "threads": torch.get_num_threads(), "encoder": a.encoder, "side": a.side, "batch": a.batch}
    res["fp32"] = measure(a.encoder, a.side, a.batch, a.steps, device, amp=False)
    if device.type == "cuda":
        res["amp"] = measure(a.encoder, a.side, a.batch, a.steps, device, amp=True)
        res["amp_speedup"] = {k: res["amp"][k] / res["fp32"][k] for k in ("spn_images_per_s", "decoupled_images_per_s")}
    if a.out:
        write_results(a.out, {**res, "command": command_line()})
    if a.json:
        print(json.dumps(res))
        return
    print(f"{res['device']} ({res['threads']} threads), encoder {a.encoder}, batch {a.batch} x {a.side}²")
    for mode in ("fp32", "amp"):
        if mode in res:
            r = res[mode]
            print(f"  {mode:5s} SPN {r['spn_images_per_s']:7.1f} img/s   DecoupledNet {r['decoupled_images_per_s']:7.1f} img/s")
    if "amp_speedup" in res:
        s = res["amp_speedup"]
        print(f"  AMP on / off: SPN x{s['spn_images_per_s']:.2f}, DecoupledNet x{s['decoupled_images_per_s']:.2f}")


if __name__ == "__main__":
    main()
