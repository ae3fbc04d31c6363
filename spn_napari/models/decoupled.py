"""DecoupledNet (Hong, Noh, Han, NIPS 2015): classification, bridge, per-class figure-ground segmentation.

    image ─ encoder (the SPN's, frozen) ─ p5 (B,C5,h,w) ─ extra conv ─ GAP ─ cls FC ─ scores (B,C)
                       │ switches of every pool
    bridge: ∂(Σ_c m_c·score_c)/∂p5 for a class mask m: the backward pass of the chosen class
            scores down to pool5, through the cls FC, the GAP and the extra conv's ReLU/BN masks
    seg net: [BN(p5), BN(bridge)] ─ 7×7 conv ─ 1×1 ─ 7×7 deconv ─ (unpool + deconvs) per encoder
             stage, mirrored ─ 1×1 ─ (B, 2, H, W) ground / figure of the masked classes

For lite0, whose only max-pool is pool5, the seg net is narrower (3×3 fc, 256 wide, 1×1 deconvs
at 1280 channels), unpools once to stride 16 and upsamples its two logits bilinearly to the input;
its encoder input may be the cached backbone map (``spn_napari.evidence.features``) instead of the image.

The classification net is the SPN's encoder and bottom classifier, frozen, so a round trains only
the segmentation net and the bridge reads the same class evidence the SPN learned. Inference runs
one pass per identified class (its figure probability) plus one with all of them (background),
normalises across those maps and takes the argmax.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .encoders import build_encoder

__all__ = ["DecoupledConfig", "DecoupledNet", "SegmentationNet", "decoupled_loss", "IGNORE"]

IGNORE = 255
"""Target value left out of the loss (padding, unlabelled pixels)."""


@dataclass(frozen=True)
class DecoupledConfig:
    """What fixes the network's shape; stored in every checkpoint."""

    n_classes: int
    encoder: str = "small"  # "lite0" | "vgg16" | "small"


def _block(cin: int, cout: int, k: int, *, transposed: bool = False) -> nn.Sequential:
    conv = (nn.ConvTranspose2d if transposed else nn.Conv2d)(cin, cout, k, padding=k // 2)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SegmentationNet(nn.Module):
    """DeconvNet-style figure-ground decoder mirroring the encoder's conv stages.

    ``stages`` are the encoder's conv widths between pools (``encoder.stages``); each is undone by
    an unpooling with that pool's switches followed by one deconv per conv (the first one
    ``unpool_kernel`` wide). ``fc_kernel``/``wide``: the fc6-as-conv block on the pool5 grid.
    """

    def __init__(self, *, stages: list[list[int]], wide: int, fc_kernel: int = 7, unpool_kernel: int = 3) -> None:
        super().__init__()
        c5 = stages[-1][-1]
        self.bn_feat, self.bn_bridge = nn.BatchNorm2d(c5), nn.BatchNorm2d(c5)
        self.fc = nn.Sequential(_block(2 * c5, wide, fc_kernel), _block(wide, wide, 1),
                                _block(wide, c5, fc_kernel, transposed=True))
        blocks = []
        for i in reversed(range(len(stages))):
            ins = list(reversed(stages[i]))
            outs = ins[1:] + [stages[i - 1][-1] if i > 0 else stages[0][0]]
            blocks.append(nn.Sequential(*[_block(a, b, unpool_kernel if j == 0 else 3, transposed=True)
                                          for j, (a, b) in enumerate(zip(ins, outs))]))
        self.blocks = nn.ModuleList(blocks)
        self.score = nn.Conv2d(stages[0][0], 2, 1)

    def forward(self, p5: Tensor, bridge: Tensor, switches: list[tuple[Tensor, torch.Size]],
                size: torch.Size | tuple[int, int]) -> Tensor:
        # p5, bridge (B, C5, h, w); switches first pool first -> (B, 2, *size) logits (ground, figure)
        h = self.fc(torch.cat([self.bn_feat(p5), self.bn_bridge(bridge)], 1))
        for block, (idx, pre) in zip(self.blocks, reversed(switches)):
            h = block(F.max_unpool2d(h, idx, 2, 2, output_size=pre))
        logits = self.score(h)
        if logits.shape[-2:] != tuple(size):  # an encoder with strided convs before its first pool
            logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
        return logits


class DecoupledNet(nn.Module):
    """Frozen classification net + bridge + trainable segmentation net."""

    def __init__(self, cfg: DecoupledConfig, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder or build_encoder(cfg.encoder, pretrained=False)
        self.cls = nn.Linear(self.encoder.z_channels, cfg.n_classes)
        self.seg = SegmentationNet(stages=self.encoder.stages, **self.encoder.decoder)
        for p in [*self.encoder.parameters(), *self.cls.parameters()]:
            p.requires_grad_(False)

    @classmethod
    def from_spn(cls, spn: nn.Module) -> DecoupledNet:
        """Round 1's net: the SPN's encoder and bottom classifier as the classification net."""
        net = cls(DecoupledConfig(n_classes=spn.cfg.n_classes, encoder=spn.cfg.encoder),
                  encoder=copy.deepcopy(spn.encoder))
        net.cls.load_state_dict(spn.bottom.state_dict())
        for p in [*net.encoder.parameters(), *net.cls.parameters()]:
            p.requires_grad_(False)
        return net

    def train(self, mode: bool = True) -> DecoupledNet:
        super().train(mode)
        self.encoder.eval()  # frozen: fixed BN statistics, and samples stay independent for the bridge
        return self

    def classify(self, p5: Tensor) -> Tensor:
        """p5 (B, C5, h, w) -> (B, C) class scores (logits)."""
        return self.cls(self.encoder.extra(p5).mean((2, 3)))

    def bridge(self, p5: Tensor, class_mask: Tensor) -> Tensor:
        """Class-specific activation (B, C5, h, w): ∂(Σ_c mask_c · score_c)/∂p5, times h·w so the
        map does not shrink with the canvas. class_mask (B, C) float, 1 for the chosen classes."""
        # float32 outside autocast: the gradient through the GAP is ~1/(h·w), subnormal in fp16
        with torch.enable_grad(), torch.autocast(p5.device.type, enabled=False):
            p = p5.detach().to(torch.promote_types(p5.dtype, torch.float32)).requires_grad_(True)
            scores = self.classify(p)
            (g,) = torch.autograd.grad((scores * class_mask.to(scores.dtype)).sum(), p)
        return (g * (p.shape[-1] * p.shape[-2])).to(p5.dtype)

    def _encode(self, x: Tensor | None, backbone: Tensor | None):
        """pool5 output, every pool's switches and the output size, from the image x (B, 3, H, W)
        or the frozen encoder's cached ``backbone`` map (B, Cb, h, w)."""
        with torch.no_grad():
            if backbone is None:
                return (*self.encoder.encode(x), x.shape[-2:])
            p5, switches = self.encoder.encode_backbone(backbone)
            s = self.encoder.backbone_stride
            return p5, switches, (backbone.shape[-2] * s, backbone.shape[-1] * s)

    def forward(self, x: Tensor | None, class_mask: Tensor, *, backbone: Tensor | None = None) -> Tensor:
        """x (B, 3, H, W) or the cached ``backbone`` (B, Cb, H/16, W/16), class_mask (B, C) ->
        (B, 2, H, W) ground/figure logits of the masked classes."""
        p5, switches, size = self._encode(x, backbone)
        return self.seg(p5, self.bridge(p5, class_mask), switches, size)

    @torch.no_grad()
    def class_probabilities(self, x: Tensor | None, *, backbone: Tensor | None = None) -> Tensor:
        """x (B, 3, H, W) (or its cached ``backbone`` map) -> (B, C) image-level class
        probabilities: the sigmoid of the frozen classification net's scores. At test time the
        classes above 0.5 are the identified ones that :meth:`segment` is asked for."""
        p5, _, _ = self._encode(x, backbone)
        return torch.sigmoid(self.classify(p5).float())

    @torch.no_grad()
    def segment(self, x: Tensor | None, classes: list[int], *, backbone: Tensor | None = None) -> Tensor:
        """x (1, 3, H, W) (or its cached ``backbone`` map), the identified classes ->
        (1 + len(classes), H, W) probabilities.

        Row 0 is background (ground of the pass with all identified classes), row k + 1 the figure
        of ``classes[k]`` (its own pass); the rows are normalised to sum to 1 at every pixel.
        """
        p5, switches, size = self._encode(x, backbone)
        k = len(classes)
        if k == 0:
            return p5.new_ones(1, *size)
        masks = p5.new_zeros(k + 1, self.cfg.n_classes)  # (K+1, C)
        masks[0, classes] = 1
        masks[torch.arange(1, k + 1), classes] = 1
        rep = lambda t: t.expand(k + 1, *t.shape[1:]).contiguous()  # noqa: E731 - one image, K+1 masks
        logits = self.seg(rep(p5), self.bridge(rep(p5), masks), [(rep(i), s) for i, s in switches], size)
        probs = logits.float().softmax(1)  # (K+1, 2, H, W)
        out = torch.cat([probs[:1, 0], probs[1:, 1]])  # (K+1, H, W)
        return out / out.sum(0, keepdim=True).clamp_min(1e-12)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def to_checkpoint(self, **extra) -> dict:
        return {"format": "spn-napari/decoupled", "version": 1, "config": asdict(self.cfg),
                "state_dict": self.state_dict(), **extra}


def decoupled_loss(logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Softmax loss of (B, 2, H, W) logits against (B, H, W) targets in {0, 1, IGNORE}: the mean
    over the pixels not ignored, or with (B, H, W) ``weight`` their weighted mean
    (sum w·loss / sum w), so that a person's pixels can weigh more than the model's own labels."""
    valid = target != IGNORE  # (B, H, W)
    if not valid.any():
        return logits.sum() * 0.0
    if weight is None:
        return F.cross_entropy(logits.float(), target.long(), ignore_index=IGNORE)
    loss = F.cross_entropy(logits.float(), target.long(), ignore_index=IGNORE, reduction="none")  # (B, H, W)
    w = torch.where(valid, weight.float(), 0.0)  # (B, H, W)
    return (loss * w).sum() / w.sum().clamp_min(1e-12)
