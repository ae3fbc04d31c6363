"""DecoupledNet: shapes, the bridge against float64 finite differences, per-class segmentation
combined as specified (rebuilt from single-class passes), absent classes, the loss against a
hand-written reference, a frozen classification net, and a small over-fit run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spn_napari.data.synthetic import generate_demo_image
from spn_napari.data.transforms import fit_mask_to_canvas, fit_to_canvas
from spn_napari.models.decoupled import IGNORE, DecoupledNet, decoupled_loss
from spn_napari.models.spn import build_spn
from spn_napari.rounds.predict import predict_labels

C = 4


@pytest.fixture
def net() -> DecoupledNet:
    torch.manual_seed(0)
    spn = build_spn(C)
    for m in spn.modules():  # non-trivial BN statistics, so eval mode differs from identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return DecoupledNet.from_spn(spn)


@pytest.mark.parametrize("h,w", [(64, 64), (70, 53)])
def test_shapes(net, h, w):
    x = torch.randn(3, 3, h, w)
    mask = torch.eye(C)[[0, 2, 3]]
    assert net(x, mask).shape == (3, 2, h, w)
    net.eval()
    probs = net.segment(x[:1], [1, 3])
    assert probs.shape == (3, h, w)
    torch.testing.assert_close(probs.sum(0), torch.ones(h, w))


def test_classification_net_is_the_spns_bottom_branch():
    """classify(pool5) reproduces the SPN's bottom-branch logits (eval mode) on the same image."""
    torch.manual_seed(4)
    spn = build_spn(C).eval()
    net = DecoupledNet.from_spn(spn).eval()
    x = torch.randn(2, 3, 64, 64)
    sp = torch.zeros(2, 64, 64, dtype=torch.long)
    with torch.no_grad():
        expected = spn(x, sp, [1, 1]).bottom
        got = net.classify(net.encoder.encode(x)[0])
    torch.testing.assert_close(got, expected)


def test_classification_net_stays_frozen(net):
    spn_like = net.cls.weight.clone()
    x = torch.randn(2, 3, 48, 48)
    decoupled_loss(net(x, torch.eye(C)[:2]), torch.randint(0, 2, (2, 48, 48))).backward()
    frozen = [*net.encoder.parameters(), *net.cls.parameters()]
    assert all(p.grad is None for p in frozen)
    assert all(p.grad is not None for p in net.seg.parameters())
    torch.testing.assert_close(net.cls.weight, spn_like)
    net.train()
    assert not net.encoder.training  # frozen BN statistics


def test_bridge_is_the_class_score_gradient(net):
    """<bridge, e> equals the float64 central difference of the masked score along e, times h·w."""
    net = net.double().eval()
    torch.manual_seed(1)
    p5 = torch.rand(2, net.encoder.pool5_channels, 5, 6, dtype=torch.float64)
    mask = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 1.0, 0]], dtype=torch.float64)
    g = net.bridge(p5, mask)  # (2, C5, 5, 6)
    for _ in range(3):
        e = torch.randn_like(p5)
        eps = 1e-6
        with torch.no_grad():
            plus = (net.classify(p5 + eps * e) * mask).sum(1)
            minus = (net.classify(p5 - eps * e) * mask).sum(1)
        fd = (plus - minus) / (2 * eps) * 30  # (2,), h·w = 30
        torch.testing.assert_close((g * e).sum((1, 2, 3)), fd, rtol=1e-5, atol=1e-8)


def test_segment_combines_single_class_passes_as_specified(net):
    """Row 0: ground of the pass with all identified classes; row k: figure of class k's own
    pass; normalised across rows — rebuilt here from plain forward() calls."""
    net.eval()
    torch.manual_seed(2)
    x = torch.randn(1, 3, 40, 56)
    classes = [0, 2]
    with torch.no_grad():
        all_p = net(x, torch.tensor([[1.0, 0, 1.0, 0]])).softmax(1)[0]  # (2, H, W)
        figs = [net(x, torch.eye(C)[[c]]).softmax(1)[0, 1] for c in classes]
    ref = torch.stack([all_p[0], *figs])
    ref = ref / ref.sum(0, keepdim=True)
    torch.testing.assert_close(net.segment(x, classes), ref, rtol=1e-4, atol=1e-5)


def test_absent_class_gets_no_pixels(net):
    net.eval()
    image = (np.random.default_rng(0).random((50, 60, 3)) * 255).astype(np.uint8)
    labels, u = predict_labels(net, image, [1], 64, torch.device("cpu"))
    assert labels.shape == (50, 60)
    assert set(np.unique(labels)) <= {0, 2}
    labels, _ = predict_labels(net, image, [], 64, torch.device("cpu"))
    assert (labels == 0).all()
    assert 0.0 <= u <= 1.0


def test_loss_ignores_255_and_matches_a_float64_reference():
    torch.manual_seed(3)
    logits = torch.randn(2, 2, 5, 7)
    target = torch.randint(0, 2, (2, 5, 7))
    target[0, :2] = IGNORE
    ref, n = 0.0, 0
    lg = logits.double()
    for b in range(2):
        for i in range(5):
            for j in range(7):
                t = int(target[b, i, j])
                if t != IGNORE:
                    ref -= float(lg[b, t, i, j] - torch.logsumexp(lg[b, :, i, j], 0))
                    n += 1
    assert decoupled_loss(logits, target).item() == pytest.approx(ref / n, rel=1e-5)
    assert decoupled_loss(logits, torch.full_like(target, IGNORE)).item() == 0.0


def test_weighted_loss_is_the_weighted_mean_of_a_float64_reference():
    """With per-pixel weights: sum w·loss / sum w over the pixels not ignored (a loop in float64);
    weights of one give the unweighted loss, and an ignored pixel's weight counts for nothing."""
    torch.manual_seed(5)
    logits = torch.randn(2, 2, 4, 6)
    target = torch.randint(0, 2, (2, 4, 6))
    target[1, 0] = IGNORE
    weight = torch.where(torch.rand(2, 4, 6) < 0.3, 10.0, 1.0)
    weight[1, 0] = 1000.0  # on ignored pixels: must not count
    lg, num, den = logits.double(), 0.0, 0.0
    for b in range(2):
        for i in range(4):
            for j in range(6):
                t = int(target[b, i, j])
                if t != IGNORE:
                    w = float(weight[b, i, j])
                    num -= w * float(lg[b, t, i, j] - torch.logsumexp(lg[b, :, i, j], 0))
                    den += w
    assert decoupled_loss(logits, target, weight).item() == pytest.approx(num / den, rel=1e-5)
    assert decoupled_loss(logits, target, torch.ones(2, 4, 6)).item() == pytest.approx(
        decoupled_loss(logits, target).item(), rel=1e-6)
    assert decoupled_loss(logits, torch.full_like(target, IGNORE), weight).item() == 0.0


def test_overfits_a_few_images():
    """Four demo images, their true masks as targets: the net learns them (pixel accuracy ≥ 0.9)."""
    torch.manual_seed(0)
    net = DecoupledNet.from_spn(build_spn(C))
    side = 64
    data = [generate_demo_image(np.random.default_rng((7, i)), 64) for i in range(4)]
    xs, ts, ms = [], [], []
    for image, mask, tags in data:
        x, _, _ = fit_to_canvas(image, None, side)
        labels = fit_mask_to_canvas(mask, side)
        for c in tags:
            xs.append(x)
            ts.append(torch.where(labels == IGNORE, IGNORE, (labels == c + 1).long()))
            ms.append(torch.eye(C)[c])
    x, t, m = torch.stack(xs), torch.stack(ts), torch.stack(ms)
    opt = torch.optim.AdamW(net.trainable_parameters(), lr=3e-3)
    for _ in range(150):
        net.train()
        loss = decoupled_loss(net(x, m), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    correct = total = 0
    for image, mask, tags in data:
        labels, _ = predict_labels(net, image, tags, side, torch.device("cpu"))
        correct += int((labels == mask).sum())
        total += mask.size
    assert correct / total >= 0.9
