"""What running a trained model needs, apart from the training loop: the device, torch's
threads, and a project's checkpoints loaded as models.

Trainers and predictors both use it, so predicting a photo imports no training code (timm's
``load_checkpoint`` and segment-anything's ``build_sam`` likewise live apart from training).
"""

from __future__ import annotations

import os

import torch

from .errors import SpnError
from .models.decoupled import DecoupledConfig, DecoupledNet
from .models.spn import SPN, SPNConfig
from .project import kinds
from .project.store import Project

__all__ = ["resolve_device", "default_threads", "load_checkpoint", "load_spn", "load_decoupled"]


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


def default_threads() -> None:
    """Use every core for intra-op parallelism (torch defaults to physical cores only), unless
    the user chose a number with OMP_NUM_THREADS, or the napari dock with SPN_NAPARI_THREADS
    (its children leave the viewer a core: :func:`spn_napari.jobs.child_threads`)."""
    chosen = os.environ.get("SPN_NAPARI_THREADS")
    if chosen and chosen.isdigit() and int(chosen) > 0:
        torch.set_num_threads(int(chosen))
    elif not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(max(1, os.cpu_count() or 1))


def load_checkpoint(project: Project, kind: str, fix: str) -> dict:
    """Checkpoint artifact ``kind``, refused (naming the file and ``fix``) when it was trained
    for another class list than the project's."""
    path = project.file(kind)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if list(ckpt.get("classes", [])) != list(project.classes):
        raise SpnError(f"{path}: checkpoint classes {ckpt.get('classes')} differ from the project's "
                       f"{list(project.classes)} — {fix}.")
    return ckpt


def load_spn(project: Project, device: torch.device) -> tuple[SPN, dict]:
    """The project's current SPN (eval mode) and its checkpoint dict (scales, classes, config)."""
    ckpt = load_checkpoint(project, kinds.SPN, f"retrain with `spn-napari train-spn {project.root}`")
    model = SPN(SPNConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt


def load_decoupled(project: Project, r: int, device: torch.device) -> tuple[DecoupledNet, dict]:
    """Round r's DecoupledNet (eval mode) and its checkpoint dict."""
    ckpt = load_checkpoint(project, kinds.round_model(r), f"start again from `spn-napari train-spn {project.root}`")
    model = DecoupledNet(DecoupledConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt
