"""Loading a torchvision-format VGG-16 state dict file into the encoder's ``features``.

The file is the user's (we never download weights): e.g. saved once with
``torch.save(torchvision.models.vgg16(weights="IMAGENET1K_V1").state_dict(), "vgg16.pth")``.
Classifier keys are ignored; missing or mis-shaped ``features.*`` keys are named in the error.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import WeightsError
from .encoders import ConvEncoder

__all__ = ["load_vgg16_features"]

_FIX = ("pass a torchvision VGG-16 state dict, saved with "
        "torch.save(torchvision.models.vgg16(weights=...).state_dict(), FILE)")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file — {_FIX}.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling/zip failure is the same user error
        raise WeightsError(f"{path}: not a PyTorch state dict ({type(exc).__name__}) — {_FIX}.") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a state dict (a dict of tensors) — {_FIX}.")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_vgg16_features(encoder: ConvEncoder, path: Path | str) -> None:
    """Copy ``features.*`` tensors from ``path`` into ``encoder`` and freeze them."""
    path = Path(path)
    state = _read_state_dict(path)
    want = {f"features.{k}": v for k, v in encoder.features.state_dict().items()}
    missing = sorted(k for k in want if k not in state)
    if missing:
        seen = sorted(state)[:6]
        raise WeightsError(
            f"{path}: missing VGG-16 keys {', '.join(missing[:6])}{' …' if len(missing) > 6 else ''} "
            f"(file has {', '.join(seen)}{' …' if len(state) > 6 else ''}) — {_FIX}.")
    wrong = [f"{k} {tuple(state[k].shape)}≠{tuple(v.shape)}" for k, v in want.items() if state[k].shape != v.shape]
    if wrong:
        raise WeightsError(f"{path}: wrong shapes for {'; '.join(wrong[:4])} — {_FIX}.")
    encoder.features.load_state_dict({k.removeprefix("features."): state[k] for k in want})
    encoder.freeze_features()
