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
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from .data.loader import MultiScaleBatches, SuperpixelImages, collate
from .data.transforms import auto_scales
from .errors import SpnError
from .events import Event
from .models.spn import SPN, SPNConfig, build_spn, spn_loss
from .store import Project

__all__ = ["TrainConfig", "train_spn", "resolve_device", "load_spn", "seed_everything", "autocast"]


@dataclass(frozen=True)
class TrainConfig:
    """SPN training settings; stored with the checkpoint."""

    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    encoder: str = "small"  # "small" | "vgg16"
    weights: str | None = None  # torchvision VGG-16 state dict file (implies encoder="vgg16")
    scales: tuple[int, ...] | None = None  # canvas sides; None: the paper's, scaled to the data
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    amp: bool = True  # mixed precision on CUDA (bf16 where supported)
    workers: int = 0  # DataLoader worker processes
    seed: int = 0


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; an unavailable CUDA request is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise SpnError(f"--device {name}: not a device — use auto, cpu, cuda or cuda:N.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SpnError(f"--device {name}: no CUDA GPU is visible here — use --device cpu or auto.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SpnError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) — pick cuda:0..")
    elif dev.type != "cpu":
        raise SpnError(f"--device {name}: unsupported — use auto, cpu, cuda or cuda:N.")
    return dev


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA where supported (fp16 otherwise); a no-op on CPU."""
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _scales(project: Project, cfg: TrainConfig) -> tuple[int, ...]:
    if cfg.scales:
        return tuple(cfg.scales)
    return auto_scales([max(im.height, im.width) for im in project.images])


def train_spn(project: Project, cfg: TrainConfig = TrainConfig()) -> Iterator[Event]:
    """Train an SPN on the project's images and tags; commit the checkpoint as artifact 'spn'.

    Yields 'step' events (loss) and one 'epoch' event per epoch, then 'done'.
    """
    project.require("superpixels")
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    encoder = "vgg16" if cfg.weights else cfg.encoder
    model = build_spn(len(project.classes), encoder=encoder, weights=cfg.weights).to(device)
    scales = _scales(project, cfg)
    data = SuperpixelImages(project)
    sampler = MultiScaleBatches(len(project), batch_size=cfg.batch_size, scales=scales, seed=cfg.seed)
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.workers,
                        persistent_workers=cfg.workers > 0)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * len(sampler)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, steps), pct_start=0.15)
    use_amp = cfg.amp and device.type == "cuda"
    t0, step = time.perf_counter(), 0
    yield Event("start", 0, steps, {"device": str(device), "scales": list(scales), "images": len(project),
                                     "encoder": encoder})
    for epoch in range(cfg.epochs):
        sampler.set_epoch(epoch)
        model.train()
        losses, correct, seen = [], 0.0, 0
        for batch in loader:
            x, sp = batch["x"].to(device, non_blocking=True), batch["sp"].to(device, non_blocking=True)
            target = batch["target"].to(device)
            with autocast(device, use_amp):
                out = model(x, sp, batch["n"].to(device))
            loss = spn_loss(out, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
            correct += ((out.top.detach() > 0) == (target > 0.5)).float().mean(1).sum().item()
            seen += len(x)
            yield Event("step", step, steps, {"loss": losses[-1], "epoch": epoch + 1})
        yield Event("epoch", epoch + 1, cfg.epochs,
                    {"loss": float(np.mean(losses)), "tag_accuracy": correct / max(1, seen),
                     "seconds": time.perf_counter() - t0})
    buf = io.BytesIO()
    torch.save(model.to("cpu").to_checkpoint(train_config=asdict(cfg), scales=list(scales),
                                             classes=list(project.classes)), buf)
    project.commit_file("spn", buf.getvalue(), suffix=".pt", depends=("superpixels",),
                        meta={"encoder": encoder, "epochs": cfg.epochs, "seconds": time.perf_counter() - t0,
                              "scales": list(scales)})
    yield Event("done", cfg.epochs, cfg.epochs, {"seconds": time.perf_counter() - t0})


def load_spn(project: Project, device: torch.device) -> tuple[SPN, dict]:
    """The project's current SPN (eval mode) and its checkpoint dict (scales, classes, config)."""
    path = project.file("spn")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if list(ckpt.get("classes", [])) != list(project.classes):
        raise SpnError(f"{path}: checkpoint classes {ckpt.get('classes')} differ from the project's "
                       f"{list(project.classes)} — retrain with `spn-napari train-spn {project.root}`.")
    model = SPN(SPNConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt


def default_threads() -> None:
    """Use every core for intra-op parallelism (torch defaults to physical cores only),
    unless the user chose a number with OMP_NUM_THREADS."""
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(max(1, os.cpu_count() or 1))
