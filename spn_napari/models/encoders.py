"""VGG-style convolutional encoders that also return the last pooling layer's switches.

Both encoders share one layout: ``features`` (conv/ReLU stages with max-pools, indexed exactly
as torchvision's ``vgg16().features`` so its state dicts load), then ``pool5`` returning argmax
indices for the decoder's unpooling (DeconvNet's shared switches), then one extra conv.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ConvEncoder", "SMALL_CFG", "VGG16_CFG", "build_encoder"]

VGG16_CFG: tuple = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# Output stride 8 (two pools + pool5), 64 channels into pool5: on ~160-pixel images a stride-32
# grid is 5×5, and the upsampler's 3×3 deconvs then blur every feature across the whole image,
# leaving SP-CAM nothing local to pool (measured: SP-CAM mIoU 0.31 at stride 16, 0.37 at 8).
SMALL_CFG: tuple = (16, "M", 32, "M", 64, 64, "M")


class ConvEncoder(nn.Module):
    """conv stages → pool5 (with switches) → extra conv; z at 1/32 of the input.

    ``batch_norm`` adds BN after each conv (small encoder, trained from scratch); without it the
    ``features`` indices match torchvision's VGG-16 (conv at 0, 2, 5, …; pools at 4, 9, 16, 23).
    """

    def __init__(self, *, cfg: Sequence, batch_norm: bool, z_channels: int) -> None:
        super().__init__()
        if cfg[-1] != "M":
            raise ValueError("encoder cfg must end with a pooling stage ('M')")
        layers: list[nn.Module] = []
        in_ch = 3
        for v in cfg[:-1]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers.append(nn.Conv2d(in_ch, v, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            in_ch = v
        self.features = nn.Sequential(*layers)
        self.pool5 = nn.MaxPool2d(2, 2, return_indices=True)
        self.pool5_channels = in_ch
        self.extra = nn.Sequential(
            nn.Conv2d(in_ch, z_channels, 3, padding=1),
            nn.BatchNorm2d(z_channels) if batch_norm else nn.Identity(),
            nn.ReLU(inplace=True),
        )
        self.z_channels = z_channels
        self.stride = 2 ** sum(v == "M" for v in cfg)  # input pixels per cell of z (32 for VGG-16)
        self.frozen = False

    def freeze_features(self) -> None:
        """Freeze the conv stages (pretrained); the extra conv stays trainable."""
        self.frozen = True
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.features.eval()

    def train(self, mode: bool = True) -> "ConvEncoder":
        super().train(mode)
        if self.frozen:
            self.features.eval()  # frozen BN statistics stay fixed too
        return self

    @property
    def stages(self) -> list[list[int]]:
        """Conv widths between pools, e.g. [[16], [32], [64, 64]] for the small encoder."""
        out: list[list[int]] = [[]]
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                out[-1].append(m.out_channels)
            elif isinstance(m, nn.MaxPool2d):
                out.append([])
        return out

    def encode(self, x: Tensor) -> tuple[Tensor, list[tuple[Tensor, torch.Size]]]:
        """x (B, 3, H, W) -> pool5 output (B, C5, H/s, W/s) and every pool's (switches, input size),
        first pool first: what a DeconvNet decoder unpools with."""
        switches = []
        for m in self.features:
            if isinstance(m, nn.MaxPool2d):
                size = x.shape[-2:]
                x, idx = F.max_pool2d(x, m.kernel_size, m.stride, return_indices=True)
                switches.append((idx, size))
            else:
                x = m(x)
        size = x.shape[-2:]
        p5, idx = self.pool5(x)
        switches.append((idx, size))
        return p5, switches

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, torch.Size]:
        """x (B, 3, H, W) -> z (B, Cz, H/s, W/s), pool5 switches (B, C5, H/s, W/s), pre-pool size.

        s = ``self.stride``: 32 for VGG-16, 8 for the small encoder."""
        c5 = self.features(x)  # (B, C5, H/16, W/16)
        p5, switches = self.pool5(c5)  # (B, C5, H/32, W/32) x2
        return self.extra(p5), switches, c5.shape[-2:]


def build_encoder(name: str) -> ConvEncoder:
    """'vgg16' (512 channels, stride 32, torchvision layout) or 'small' (BN, z 128 channels,
    upsampler 64, stride 8, CPU-friendly)."""
    if name == "vgg16":
        return ConvEncoder(cfg=VGG16_CFG, batch_norm=False, z_channels=512)
    if name == "small":
        return ConvEncoder(cfg=SMALL_CFG, batch_norm=True, z_channels=128)
    raise ValueError(f"unknown encoder {name!r}: use 'small' or 'vgg16'")
