"""The Superpixel Pooling Network (Kwak, Hong, Han, AAAI 2017).

    image (B,3,H,W) ─ encoder ─ z (B,Cz,H/s,W/s) ─ GAP ─ bottom FC ─ (B,C)      s = 32 (VGG-16), 8 (small)
                          │ pool5 switches
                          └ upsampler: deconv, deconv, unpool(switches), deconv, deconv
                               F (B,K,2H/s,2W/s) ─ superpixel pool ─ (ΣN,K) ─ mean ─ top FC ─ (B,C)

Loss: the sum over classes of binary logistic losses, on both branches. SP-CAM reuses the top FC
on every superpixel's pooled feature; the CAM baseline applies the bottom FC per location of z.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import segment_mean, superpixel_pool
from .encoders import ConvEncoder, build_encoder
from .vgg import load_vgg16_features

__all__ = ["SPN", "SPNConfig", "SPNOutput", "build_spn", "spn_loss"]


@dataclass(frozen=True)
class SPNConfig:
    """What fixes the network's shape; stored in every checkpoint."""

    n_classes: int
    encoder: str = "small"  # "small" | "vgg16"


@dataclass
class SPNOutput:
    top: Tensor  # (B, C) logits of the superpixel branch
    bottom: Tensor  # (B, C) logits of the GAP(z) branch
    pooled: Tensor  # (ΣN, K) superpixel features
    z: Tensor  # (B, Cz, H/s, W/s), s the encoder's stride


def _deconv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Upsampler(nn.Module):
    """DeconvNet-style: two deconvs, unpooling with the encoder's pool5 switches, two deconvs."""

    def __init__(self, *, z_channels: int, pool_channels: int, k: int) -> None:
        super().__init__()
        self.pre = nn.Sequential(_deconv(z_channels, pool_channels), _deconv(pool_channels, pool_channels))
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.post = nn.Sequential(_deconv(pool_channels, k), _deconv(k, k))

    def forward(self, z: Tensor, switches: Tensor, size: torch.Size) -> Tensor:
        # z (B, Cz, h, w); switches (B, C5, h, w) -> (B, K, 2h, 2w) (the pre-pool5 size)
        return self.post(self.unpool(self.pre(z), switches, output_size=size))


class SPN(nn.Module):
    """Encoder + upsampler + superpixel pooling + top/bottom classifiers."""

    def __init__(self, cfg: SPNConfig, encoder: ConvEncoder | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder or build_encoder(cfg.encoder)
        k = self.encoder.pool5_channels
        self.upsampler = Upsampler(z_channels=self.encoder.z_channels, pool_channels=k, k=k)
        self.top = nn.Linear(k, cfg.n_classes)
        self.bottom = nn.Linear(self.encoder.z_channels, cfg.n_classes)

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, 3, H, W) normalised -> z (B, Cz, H/s, W/s), F (B, K, 2H/s, 2W/s)."""
        z, switches, size = self.encoder(x)
        return z, self.upsampler(z, switches, size)

    def forward(self, x: Tensor, sp: Tensor, n_sp: Sequence[int] | Tensor) -> SPNOutput:
        """x (B, 3, H, W); sp (B, H, W) labels 0..n_sp[b]-1, negative = padding."""
        z, feat = self.features(x)
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


def build_spn(n_classes: int, *, encoder: str = "small", weights: Path | str | None = None) -> SPN:
    """An SPN; with ``weights`` (a torchvision VGG-16 state dict file) the conv stages load and freeze."""
    if weights is not None and encoder != "vgg16":
        raise ValueError("weights files are VGG-16 state dicts: use encoder='vgg16' with them")
    model = SPN(SPNConfig(n_classes=n_classes, encoder=encoder))
    if weights is not None:
        load_vgg16_features(model.encoder, weights)
    return model
