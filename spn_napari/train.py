"""Training loops. Each is a generator of progress :class:`Event` s: stop iterating to cancel.

The CLI prints the events (bar or JSON lines), the GUI's child process forwards them, tests
read them. The result is committed to the project only when training completes.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import distributed
from .batches import MultiScaleBatches, SuperpixelImages, collate
from .data.transforms import auto_scales
from .errors import SpnError
from .events import Event
from .evidence.features import feature_cache
from .models.encoders import ENCODERS
from .models.spn import build_spn, spn_loss
from .project import kinds
from .project.durable import atomic_write_bytes
from .project.store import Project
from .runtime import resolve_device

__all__ = ["TrainConfig", "DEFAULT_EPOCHS", "train_spn", "training_scales", "fit", "resolve_encoder", "seed_everything",
           "autocast", "batch_inputs"]


@dataclass(frozen=True)
class TrainConfig:
    """SPN training settings; stored with the checkpoint."""

    epochs: int | None = None  # None: the encoder's default (DEFAULT_EPOCHS)
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    encoder: str = "auto"  # "auto" (lite0; vgg16 with weights) | "lite0" | "lite2" | "vgg16" | "small"
    weights: str | None = None  # torchvision VGG-16 state dict file (implies encoder="vgg16")
    cache: bool = True  # a frozen encoder's maps computed once per image and side (spn_napari.evidence.features)
    scales: tuple[int, ...] | None = None  # canvas sides; None: the paper's, scaled to the data
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    amp: bool = True  # mixed precision on CUDA (bf16 where supported)
    workers: int = 0  # DataLoader worker processes
    seed: int = 0
    state: str | None = None  # training-state file: resume from it if present, rewrite it every epoch
    compile: bool = False  # torch.compile the conv stages (worth it on GPUs; minutes of compiling on a CPU)


DEFAULT_EPOCHS = {"lite0": 20, "lite2": 20, "vgg16": 30, "small": 30}
"""lite0 trains only its head on a frozen, pretrained map: 20 epochs (msrc-dev, docs/real-photos.md)."""


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA where supported (fp16 otherwise); a no-op on CPU."""
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def training_scales(project: Project, scales: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The canvas sides to train on: ``scales`` when given, else the paper's, scaled to the
    project's image sizes (:func:`~spn_napari.data.transforms.auto_scales`)."""
    if scales:
        return tuple(scales)
    return auto_scales([max(im.height, im.width) for im in project.images])


def train_spn(project: Project, cfg: TrainConfig = TrainConfig()) -> Iterator[Event]:
    """Train an SPN on the project's images and tags; commit the checkpoint as artifact 'spn'.

    Yields 'step' events (loss) and one 'epoch' event per epoch, then 'done'.
    """
    project.require(kinds.SUPERPIXELS)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    encoder = resolve_encoder(cfg.encoder, cfg.weights)
    cfg = replace(cfg, epochs=cfg.epochs or DEFAULT_EPOCHS[encoder])
    model = build_spn(len(project.classes), encoder=encoder, weights=cfg.weights).to(device)
    scales = training_scales(project, cfg.scales)
    cache = yield from feature_cache(project, model.encoder, encoder, scales, device, cfg.cache)
    if cfg.compile:
        compile_convs(model.encoder, model.upsampler)
    net = distributed.wrap(model, device)
    rank, world = distributed.rank_world()
    data = SuperpixelImages(project, features=cache)
    sampler = MultiScaleBatches(len(project), batch_size=cfg.batch_size, scales=scales, seed=cfg.seed,
                                rank=rank, world=world, drop_last=world > 1)
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.workers,
                        persistent_workers=cfg.workers > 0)
    yield Event("start", 0, cfg.epochs * len(sampler), {"device": str(device), "scales": list(scales),
                "images": len(project), "encoder": encoder, "cached": bool(cache), "epochs": cfg.epochs})

    def step(batch: dict) -> tuple[torch.Tensor, dict]:
        x, f = batch_inputs(batch, device)
        sp, target = batch["sp"].to(device, non_blocking=True), batch["target"].to(device)
        with autocast(device, cfg.amp):
            out = net(x, sp, batch["n"].to(device), backbone=f)
        hits = ((out.top.detach() > 0) == (target > 0.5)).float().mean(1).sum().item()
        return spn_loss(out, target), {"tag_accuracy": (hits, len(target))}

    t0 = time.perf_counter()
    yield from fit(model, loader, sampler, step, epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                   state=cfg.state, fingerprint={"trainer": "spn", "superpixels": project.require(kinds.SUPERPIXELS)["version"],
                                                 "images": len(project), "encoder": encoder, "seed": cfg.seed,
                                                 "cached": bool(cache)})
    if not distributed.is_main():
        distributed.barrier()
        yield Event("done", cfg.epochs, cfg.epochs, {"seconds": time.perf_counter() - t0, "rank": rank})
        return
    buf = io.BytesIO()
    torch.save(model.to("cpu").to_checkpoint(train_config=asdict(cfg), scales=list(scales),
                                             classes=list(project.classes)), buf)
    project.commit_file(kinds.SPN, buf.getvalue(), suffix=".pt", depends=(kinds.SUPERPIXELS,),
                        meta={"encoder": encoder, "epochs": cfg.epochs, "seconds": time.perf_counter() - t0,
                              "scales": list(scales)})
    drop_state(cfg.state)
    distributed.barrier()
    yield Event("done", cfg.epochs, cfg.epochs, {"seconds": time.perf_counter() - t0})


def resolve_encoder(name: str, weights: str | None) -> str:
    """'auto' -> 'vgg16' with a weights file, else the pretrained 'lite0'; unknown names are one line."""
    if name == "auto":
        return "vgg16" if weights else "lite0"
    if name not in ENCODERS:
        raise SpnError(f"--encoder {name}: unknown encoder — use auto, {', '.join(ENCODERS)}.")
    if weights and name != "vgg16":
        raise SpnError("--weights: a weights file is a VGG-16 state dict — use it with --encoder vgg16.")
    return name


def batch_inputs(batch: dict, device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A batch's images x (B, 3, S, S) or cached backbone maps f (B, Cb, g, g): one is None."""
    x, f = batch.get("x"), batch.get("f")
    return (None if x is None else x.to(device, non_blocking=True)), (None if f is None else f.to(device, non_blocking=True))


def compile_convs(*modules: torch.nn.Module) -> None:
    """torch.compile in place (state-dict keys unchanged); only the conv stages, whose shapes are
    fixed per canvas side — superpixel pooling has data-dependent sizes and stays eager."""
    for m in modules:
        m.compile(dynamic=False)


def drop_state(state: str | None) -> None:
    """A training state is only for resuming: once its result is committed it is renamed to
    FILE.done (kept for inspection), so the next run with the same --state starts afresh."""
    if state and Path(state).exists():
        os.replace(state, f"{state}.done")


def fit(model: torch.nn.Module, loader, sampler, step, *, epochs: int, lr: float,
        weight_decay: float, state: Path | str | None = None, fingerprint: dict | None = None) -> Iterator[Event]:
    """The optimisation loop every trainer shares: AdamW with a one-cycle schedule.

    ``step(batch) -> (loss, {name: (sum, count)})`` runs the forward pass (through the DDP
    wrapper when distributed); the counts become per-epoch averages in the 'epoch' events.
    Yields a 'step' event per batch. With ``state``, training resumes from that file when it
    exists and rank 0 rewrites it (atomically) after every epoch: model, optimiser, schedule.
    ``fingerprint`` (what is being trained, on what) must match the file's to resume; callers
    delete the file once their result is committed.
    """
    if len(sampler) == 0:
        raise SpnError(f"no complete batch of {sampler.batch_size} × {sampler.world} process(es) in "
                       f"{sampler.epoch_size} samples — use a smaller --batch-size.")
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * len(sampler)
    fingerprint = {**(fingerprint or {}), "epochs": epochs, "steps": steps, "lr": lr,
                   "batch_size": sampler.batch_size, "world": sampler.world}
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps), pct_start=0.15)
    t0, n, start = time.perf_counter(), 0, 0
    if state is not None and Path(state).exists():
        saved = torch.load(state, map_location="cpu", weights_only=True)
        if saved.get("fingerprint") != fingerprint:
            diff = sorted(k for k in fingerprint if saved.get("fingerprint", {}).get(k) != fingerprint[k])
            raise SpnError(f"--state {state}: saved by another training run (differs in {', '.join(diff)}) "
                           f"— delete it, or resume with the same command and settings.")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["schedule"])
        start = saved["epoch"]
        n = start * len(sampler)
        yield Event("resume", n, steps, {"epoch": start, "state": str(state)})
    for epoch in range(start, epochs):
        sampler.set_epoch(epoch)
        model.train()
        losses, stats = [], {}
        for batch in loader:
            try:
                loss, extra = step(batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            except torch.cuda.OutOfMemoryError:
                bs = len(batch["index"])
                raise SpnError(f"out of GPU memory at batch size {bs} — try --batch-size {max(1, bs // 2)}"
                               f"{' or smaller --scales' if bs == 1 else ''}.") from None
            sched.step()
            n += 1
            losses.append(loss.item())
            for k, (a, b) in extra.items():
                s = stats.setdefault(k, [0.0, 0])
                s[0], s[1] = s[0] + a, s[1] + b
            yield Event("step", n, steps, {"loss": losses[-1], "epoch": epoch + 1})
        if state is not None and distributed.is_main():
            buf = io.BytesIO()
            torch.save({"epoch": epoch + 1, "fingerprint": fingerprint, "model": model.state_dict(),
                        "optimizer": opt.state_dict(), "schedule": sched.state_dict()}, buf)
            atomic_write_bytes(Path(state), buf.getvalue())
        yield Event("epoch", epoch + 1, epochs,
                    {"loss": float(np.mean(losses)) if losses else float("nan"),
                     **{k: a / max(1, b) for k, (a, b) in stats.items()}, "seconds": time.perf_counter() - t0})
