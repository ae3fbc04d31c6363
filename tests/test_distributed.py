"""torchrun + DistributedDataParallel on 2 CPU processes (gloo), and resuming from a training state.

Reference for DDP: one process runs the same global batch as the two ranks' shards (the
sampler's own slicing) and averages their gradients before one AdamW step. Each shard is
batch-normalised on its own in both runs: PyTorch's SyncBatchNorm is GPU-only, so on CPU that is
what DDP computes (on GPUs the trainers switch to SyncBatchNorm).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spn_napari.batches import MultiScaleBatches, SuperpixelImages, collate
from spn_napari.data.readers import read_dataset
from spn_napari.evidence.features import cached_sides
from spn_napari.evidence.superpixels import SuperpixelConfig, compute_superpixels
from spn_napari.models.spn import build_spn, spn_loss
from spn_napari.pipeline import run
from spn_napari.project.store import Project
from spn_napari.train import TrainConfig, seed_everything, train_spn, training_scales

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def four(tmp_path_factory, demo_dir) -> Project:
    """A 4-image project: one global batch of 2 images × 2 ranks, so one optimiser step."""
    ds = read_dataset(demo_dir)
    project = Project.create(tmp_path_factory.mktemp("ddp") / "p", dataclasses.replace(ds, items=ds.items[:4]))
    run(compute_superpixels(project, SuperpixelConfig(n_segments=30), workers=1))
    return project


def test_two_gloo_processes_equal_one_process_on_the_same_global_batch(four, tmp_path):
    """After one step, AdamW's first moment is (1 - beta1) × the gradient: it must be the gradient of the
    mean loss over both shards (which a wrong shard or a sum instead of a mean would break)."""
    state = tmp_path / "state.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(ROOT / "trainers" / "train_spn.py"), str(four.root), "--epochs", "1",
                        "--batch-size", "2", "--device", "cpu", "--progress", "none", "--state", str(state)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    four.reload()
    ddp = torch.load(four.file("spn"), weights_only=True)["state_dict"]
    assert not state.exists()  # committed: renamed, so the next run starts afresh
    moments = torch.load(f"{state}.done", weights_only=True)["optimizer"]["state"]

    cfg = TrainConfig(epochs=1, batch_size=2)
    scales = training_scales(four, cfg.scales)
    data = SuperpixelImages(four, features=cached_sides(four, "lite0", scales))  # what rank 0 cached
    shards = []
    for rank in (0, 1):
        sampler = MultiScaleBatches(len(four), batch_size=2, scales=scales, seed=cfg.seed, rank=rank, world=2,
                                    drop_last=True)
        (keys,) = list(sampler)
        shards.append(collate([data[k] for k in keys]))

    def gradients(batches):
        """The trainer's initial model (same seed); gradient of the mean of the shards' losses."""
        seed_everything(cfg.seed)
        model = build_spn(len(four.classes))
        model.train()
        loss = sum(spn_loss(model(None, b["sp"], b["n"], backbone=b["f"]), b["target"]) for b in batches) / len(batches)
        loss.backward()
        return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}, model

    grads, model = gradients(shards)
    names = list(grads)
    # the one-cycle schedule sets AdamW's beta1 for the first step (its momentum cycling)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=cfg.lr)
    torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=1, pct_start=0.15)
    w = 1 - opt.param_groups[0]["betas"][0]
    assert len(moments) == len(names)
    # A conv bias followed by BN has a zero gradient in exact arithmetic: what is left is float noise,
    # so the absolute tolerance follows the size of the gradients overall (measured: at most 1.7e-8
    # off with a largest gradient of 0.52, so 1e-7 of it leaves a 3x margin).
    atol = 1e-7 * max(float(g.abs().max()) for g in grads.values())
    for k, name in enumerate(names):
        torch.testing.assert_close(moments[k]["exp_avg"], w * grads[name], rtol=1e-3, atol=atol, msg=name)
    only0, _ = gradients(shards[:1])  # control: the other shard's gradient must matter
    assert max(float((moments[k]["exp_avg"] - w * only0[n]).abs().max()) for k, n in enumerate(names)) > 1e-5
    # rank 0 saved the common initial model after one (tiny, warm-up) step
    for name, p in model.named_parameters():
        torch.testing.assert_close(ddp[name], p.detach(), rtol=0, atol=1e-4, msg=name)


def test_resuming_from_the_state_file_equals_an_uninterrupted_run(four, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=2, device="cpu")
    run(train_spn(four, cfg))
    straight = torch.load(four.file("spn"), weights_only=True)["state_dict"]

    state = tmp_path / "spn.state.pt"
    events = train_spn(four, dataclasses.replace(cfg, state=str(state)))
    for ev in events:
        if ev.event == "epoch" and ev.step == 1:
            break  # interrupted after the first epoch
    events.close()
    assert state.exists()
    resumed_events = list(train_spn(four, dataclasses.replace(cfg, state=str(state))))
    assert resumed_events[1].event == "resume" and resumed_events[1].data["epoch"] == 1
    four.reload()
    resumed = torch.load(four.file("spn"), weights_only=True)["state_dict"]
    for name, v in straight.items():
        torch.testing.assert_close(resumed[name], v, msg=name)


def test_compile_keeps_outputs_and_checkpoint_keys(four):
    """--compile (torch.compile of the conv stages): same features as eager mode, and a training
    run with it commits a checkpoint that loads into a plain SPN."""
    import copy

    from spn_napari.runtime import load_spn
    from spn_napari.train import compile_convs
    torch.manual_seed(0)
    eager = build_spn(4).eval()
    compiled = copy.deepcopy(eager)
    compile_convs(compiled.encoder, compiled.upsampler)
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        for a, b in zip(eager.features(x), compiled.features(x)):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    run(train_spn(four, TrainConfig(epochs=1, batch_size=2, device="cpu", scales=(48,), compile=True)))
    four.reload()
    model, _ = load_spn(four, torch.device("cpu"))
    assert model.state_dict().keys() == eager.state_dict().keys()


_PREDICT_ROUND = """
import json, sys, torch
from spn_napari import distributed
from spn_napari.models.decoupled import DecoupledNet
from spn_napari.rounds.predict import predict_round_labels
from spn_napari.events import run
from spn_napari.project.store import Project
from spn_napari.runtime import load_spn
from spn_napari.train import seed_everything
distributed.init_from_env("cpu")
project = Project(sys.argv[1])
spn, ckpt = load_spn(project, torch.device("cpu"))
seed_everything(0)  # the segmentation head's initial weights: the same on every rank
model = DecoupledNet.from_spn(spn).eval()
gen = predict_round_labels(project, model, "round/9/labels", sorted(ckpt["scales"])[0], torch.device("cpu"))
try:
    while True:
        next(gen)
except StopIteration as stop:
    unc = stop.value
if distributed.is_main():
    print(json.dumps(unc))
distributed.shutdown()
"""


def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                        *args], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def five_trained(tmp_path_factory, demo_dir) -> Path:
    """5 images (an odd number: the ranks' shares differ) and a 1-epoch lite0 SPN trained without
    the feature cache, so that pseudo-labels compute it, sharded too."""
    ds = read_dataset(demo_dir)
    project = Project.create(tmp_path_factory.mktemp("shard") / "p", dataclasses.replace(ds, items=ds.items[:5]))
    run(compute_superpixels(project, SuperpixelConfig(n_segments=30), workers=1))
    run(train_spn(project, TrainConfig(epochs=1, batch_size=2, device="cpu", cache=False, scales=(64, 96))))
    assert not cached_sides(project, "lite0", (64, 96))
    return project.root


def test_sharded_inference_under_two_gloo_processes_equals_one_process(five_trained, tmp_path):
    """pseudo-labels (with the feature cache it computes) and a round's prediction: 2 ranks, each
    writing its own images into one version, give exactly what 1 process gives."""
    import json
    import shutil
    script = tmp_path / "predict_round.py"
    script.write_text(_PREDICT_ROUND)
    roots, uncertainty = {}, {}
    for nproc in (1, 2):
        root = roots[nproc] = tmp_path / f"p{nproc}"
        shutil.copytree(five_trained, root)
        _torchrun(nproc, "-m", "spn_napari", "pseudo-labels", str(root), "--device", "cpu", "--multi-scale",
                  "--progress", "none")
        uncertainty[nproc] = json.loads(_torchrun(nproc, str(script), str(root)).stdout.strip().splitlines()[-1])
    one, two = Project(roots[1]), Project(roots[2])
    kinds = ["cams/sp-cam", "cams/cam", "pseudo/sp-cam", "round/9/labels",
             *cached_sides(one, "lite0", (64, 96)).values()]
    assert len(kinds) == 6 and len(uncertainty[1]) == len(one)
    assert uncertainty[1] == uncertainty[2]
    for kind in kinds:
        assert two.artifact(kind) is not None, kind
        for i in range(len(one)):
            np.testing.assert_array_equal(one.read(kind, i), two.read(kind, i), err_msg=f"{kind} image {i}")
    parts = {p.name for p in (two.root / "data.zarr" / two.artifact("pseudo/sp-cam")["group"]).iterdir()}
    assert {"part-0", "part-1", "index"} <= parts  # each rank wrote its own part
