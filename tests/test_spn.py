"""SPN: shapes, shared pool5 switches, VGG-16 loading/freezing, weights-file errors, loss, SP-CAM/CAM.

References: torchvision's vgg16().features layout (written out by hand, torchvision is not
installed), float64 logistic losses, float64 matrix products and per-location loops.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from spn_napari.errors import WeightsError
from spn_napari.models.encoders import build_encoder
from spn_napari.models.spn import SPNOutput, build_spn, spn_loss

# torchvision.models.vgg16().features: conv (out channels) at these indices, ReLU after each, pools at 4, 9, 16, 23, 30
TV_CONVS = {0: 64, 2: 64, 5: 128, 7: 128, 10: 256, 12: 256, 14: 256,
            17: 512, 19: 512, 21: 512, 24: 512, 26: 512, 28: 512}
TV_POOLS = (4, 9, 16, 23)  # 30 is our separate pool5


def make_sp(b: int, h: int, w: int, n_sp: list[int], seed: int = 0) -> torch.Tensor:
    """(B, H, W) labels where image b uses every label 0..n_sp[b]-1."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([(torch.randperm(h * w, generator=g) % n).view(h, w) for n in n_sp])


def tv_state_dict(seed: int = 123) -> dict[str, torch.Tensor]:
    """A torchvision-format VGG-16 state dict (features.* + classifier keys we must ignore)."""
    torch.manual_seed(seed)
    sd = {f"features.{k}": v.clone() for k, v in build_encoder("vgg16").features.state_dict().items()}
    sd["classifier.0.weight"] = torch.randn(7, 5)
    sd["classifier.0.bias"] = torch.randn(7)
    return sd


@pytest.fixture(scope="module")
def vgg_sd() -> dict[str, torch.Tensor]:
    return tv_state_dict()


@pytest.fixture
def save(tmp_path):
    """Save an object with torch.save to tmp_path/name; files are removed after the test (60 MB each)."""
    paths = []

    def _save(obj, name="w.pth"):
        p = tmp_path / name
        torch.save(obj, p)
        paths.append(p)
        return p

    yield _save
    for p in paths:
        p.unlink(missing_ok=True)


# ---------------------------------------------------------------- shapes

@pytest.mark.parametrize("encoder, h, w, cz, stride", [
    ("small", 250, 250, 128, 8),
    ("small", 250, 170, 128, 8),
    ("vgg16", 100, 72, 512, 32),
])
def test_output_shapes(encoder, h, w, cz, stride):
    torch.manual_seed(0)
    n_classes, n_sp = 4, [5, 9]
    model = build_spn(n_classes, encoder=encoder).eval()
    x = torch.randn(2, 3, h, w)
    sp = make_sp(2, h, w, n_sp)
    with torch.no_grad():
        out = model(x, sp, n_sp)
        z, feat = model.features(x)
    assert out.top.shape == (2, n_classes)
    assert out.bottom.shape == (2, n_classes)
    assert out.pooled.shape == (sum(n_sp), model.encoder.pool5_channels)  # K = pool5's channels
    assert model.encoder.stride == stride
    assert out.z.shape == (2, cz, h // stride, w // stride)  # the pools floor: 250 -> 31 at stride 8
    assert z.shape == out.z.shape
    assert feat.shape == (2, model.encoder.pool5_channels, h // (stride // 2), w // (stride // 2))
    assert all(torch.isfinite(t).all() for t in (out.top, out.bottom, out.pooled, out.z))


# ---------------------------------------------------------------- layout and pool5 switches

def test_vgg16_features_match_torchvision_layout():
    enc = build_encoder("vgg16")
    feats = enc.features
    assert len(feats) == 30  # torchvision's 31 minus the last pool, which is our pool5
    in_ch = 3
    for i, m in enumerate(feats):
        if i in TV_CONVS:
            assert isinstance(m, nn.Conv2d), i
            assert (m.in_channels, m.out_channels) == (in_ch, TV_CONVS[i])
            assert m.kernel_size == (3, 3) and m.padding == (1, 1) and m.stride == (1, 1)
            in_ch = m.out_channels
        elif i in TV_POOLS:
            assert isinstance(m, nn.MaxPool2d) and m.kernel_size == 2 and m.stride == 2, i
        else:
            assert isinstance(m, nn.ReLU) and i - 1 in TV_CONVS, i
    want_keys = {f"{i}.{p}" for i in TV_CONVS for p in ("weight", "bias")}
    assert set(feats.state_dict()) == want_keys
    assert isinstance(enc.pool5, nn.MaxPool2d) and enc.pool5.return_indices
    assert enc.pool5.kernel_size == 2 and enc.pool5.stride == 2
    assert enc.pool5_channels == 512 and enc.z_channels == 512


def test_small_encoder_has_two_pools_before_pool5():
    enc = build_encoder("small")  # output stride 8: two pools, then pool5
    assert sum(isinstance(m, nn.MaxPool2d) for m in enc.features) == 2
    assert not isinstance(enc.features[-1], nn.MaxPool2d)
    assert enc.pool5.return_indices


@pytest.mark.parametrize("encoder, h, w", [("small", 250, 250), ("small", 90, 150), ("vgg16", 64, 96)])
def test_unpool_uses_pool5_switches(encoder, h, w):
    torch.manual_seed(1)
    model = build_spn(3, encoder=encoder).eval()
    seen = {}

    def feats_hook(mod, args, out):
        seen["c5"] = out.detach().clone()

    def pool5_hook(mod, args, out):
        assert args[0].shape == seen["c5"].shape
        seen["pool5"] = out[1]

    def unpool_pre(mod, args, kwargs):
        seen["unpool_idx"] = args[1] if len(args) > 1 else kwargs["indices"]
        seen["unpool_size"] = tuple(kwargs.get("output_size", args[2] if len(args) > 2 else ()))

    hooks = [model.encoder.features.register_forward_hook(feats_hook),
             model.encoder.pool5.register_forward_hook(pool5_hook),
             model.upsampler.unpool.register_forward_pre_hook(unpool_pre, with_kwargs=True)]
    n_sp = [4, 6]
    with torch.no_grad():
        model(torch.randn(2, 3, h, w), make_sp(2, h, w, n_sp), n_sp)
    for hk in hooks:
        hk.remove()
    assert seen["unpool_idx"] is seen["pool5"]
    assert torch.equal(seen["unpool_idx"], seen["pool5"])
    c5 = seen["c5"]
    assert tuple(seen["unpool_size"])[-2:] == tuple(c5.shape[-2:])
    # the switches index the (H/16, W/16) map entering pool5 and point at its 2x2 maxima
    b, c, hh, ww = c5.shape
    idx = seen["pool5"]
    assert idx.shape == (b, c, hh // 2, ww // 2)
    gathered = c5.flatten(2).gather(2, idx.flatten(2)).view_as(idx)
    pooled = c5[..., : hh // 2 * 2, : ww // 2 * 2].unfold(2, 2, 2).unfold(3, 2, 2).amax((-1, -2))
    torch.testing.assert_close(gathered, pooled, rtol=0, atol=0)


# ---------------------------------------------------------------- loading + freezing

def test_vgg16_weights_load_freeze_and_gradients(vgg_sd, save):
    path = save(vgg_sd)
    torch.manual_seed(7)  # a different init than the file's
    model = build_spn(3, encoder="vgg16", weights=path)
    feats = model.encoder.features
    for k, v in feats.state_dict().items():
        assert torch.equal(v, vgg_sd[f"features.{k}"]), k
    assert all(not p.requires_grad for p in feats.parameters())
    model.train()
    assert model.training and model.encoder.training and model.upsampler.training
    assert all(not m.training for m in feats.modules())  # frozen stages stay in eval mode
    assert model.encoder.extra.training
    trainable = {id(p) for p in model.trainable_parameters()}
    assert not trainable & {id(p) for p in feats.parameters()}

    n_sp = [5]
    x = torch.randn(1, 3, 64, 64)
    out = model(x, make_sp(1, 64, 64, n_sp), n_sp)
    spn_loss(out, torch.tensor([[1.0, 0.0, 1.0]])).backward()
    for name, p in feats.named_parameters():
        assert p.grad is None, name
    for part in (model.encoder.extra, model.upsampler, model.top, model.bottom):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
    # parameter values of the frozen stages are untouched by an optimizer step
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    opt.step()
    for k, v in feats.state_dict().items():
        assert torch.equal(v, vgg_sd[f"features.{k}"]), k


def test_without_weights_features_train():
    model = build_spn(2, encoder="small")
    assert all(p.requires_grad for p in model.encoder.features.parameters())
    model.train()
    assert all(m.training for m in model.encoder.features.modules())


def test_weights_require_vgg16():
    with pytest.raises(ValueError):
        build_spn(2, encoder="small", weights="whatever.pth")


@pytest.mark.parametrize("wrap", ["state_dict", "module"])
def test_wrapped_state_dicts_load(vgg_sd, save, wrap):
    obj = {"state_dict": vgg_sd, "epoch": 3} if wrap == "state_dict" else {f"module.{k}": v for k, v in vgg_sd.items()}
    model = build_spn(2, encoder="vgg16", weights=save(obj))
    for k, v in model.encoder.features.state_dict().items():
        assert torch.equal(v, vgg_sd[f"features.{k}"]), k
    assert not any(p.requires_grad for p in model.encoder.features.parameters())


# ---------------------------------------------------------------- weights-file errors

@pytest.mark.parametrize("kind", ["list", "bytes", "strings", "empty", "pickle_list"])
def test_not_a_state_dict(tmp_path, kind):
    path = tmp_path / f"bad_{kind}.pth"
    if kind == "list":
        torch.save([torch.zeros(2), torch.ones(3)], path)
    elif kind == "bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "strings":
        torch.save({"features.0.weight": "not a tensor", "x": "y"}, path)
    elif kind == "empty":
        torch.save({}, path)
    else:
        path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(WeightsError) as ei:
        build_spn(2, encoder="vgg16", weights=path)
    assert str(path) in str(ei.value)
    assert "\n" not in str(ei.value)


def test_nonexistent_file(tmp_path):
    path = tmp_path / "nope" / "vgg16.pth"
    with pytest.raises(WeightsError) as ei:
        build_spn(2, encoder="vgg16", weights=path)
    assert str(path) in str(ei.value)


@pytest.mark.parametrize("drop", [["features.0.weight"], ["features.28.bias", "features.14.weight"]])
def test_missing_keys_are_named(vgg_sd, save, drop):
    sd = {k: v for k, v in vgg_sd.items() if k not in drop}
    path = save(sd)
    with pytest.raises(WeightsError) as ei:
        build_spn(2, encoder="vgg16", weights=path)
    msg = str(ei.value)
    assert str(path) in msg
    missing_part = msg.split("(file has")[0]
    for k in drop:
        assert k in missing_part
    assert "features.2.weight" not in missing_part  # only the missing ones


def test_wrong_shape_names_key_and_shapes(vgg_sd, save):
    sd = dict(vgg_sd)
    sd["features.2.weight"] = torch.zeros(64, 64, 1, 1)
    path = save(sd)
    with pytest.raises(WeightsError) as ei:
        build_spn(2, encoder="vgg16", weights=path)
    msg = str(ei.value)
    assert str(path) in msg and "features.2.weight" in msg
    assert "(64, 64, 1, 1)" in msg and "(64, 64, 3, 3)" in msg
    assert "features.0.weight" not in msg


# ---------------------------------------------------------------- loss

def bce_ref(logits: np.ndarray, t: np.ndarray) -> np.ndarray:
    """float64 binary logistic loss -[t log s + (1 - t) log(1 - s)], s = 1 / (1 + exp(-x))."""
    s = 1.0 / (1.0 + np.exp(-logits))
    return -(t * np.log(s) + (1 - t) * np.log(1 - s))


def test_spn_loss_matches_hand_bce():
    g = torch.Generator().manual_seed(5)
    top = torch.randn(3, 4, generator=g) * 4
    bottom = torch.randn(3, 4, generator=g) * 4
    top[0, 0], bottom[1, 2] = 15.0, -12.0  # saturated but finite in float64
    targets = torch.tensor([[1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 0, 0]])
    out = SPNOutput(top=top, bottom=bottom, pooled=torch.zeros(0, 1), z=torch.zeros(3, 1, 1, 1))
    t = targets.numpy().astype(np.float64)
    per_img = (bce_ref(top.double().numpy(), t).sum(1) + bce_ref(bottom.double().numpy(), t).sum(1))
    ref = per_img.mean()
    # hand check of one term: target 1, logit 0 -> log 2
    assert bce_ref(np.array([0.0]), np.array([1.0]))[0] == pytest.approx(np.log(2))
    for tt in (targets, targets.float(), targets.bool()):
        loss = spn_loss(out, tt)
        assert loss.dim() == 0
        assert loss.item() == pytest.approx(ref, rel=1e-6)


def test_spn_loss_on_model_output():
    torch.manual_seed(2)
    model = build_spn(3, encoder="small").eval()
    n_sp = [4, 7]
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64), make_sp(2, 64, 64, n_sp), n_sp)
    targets = torch.tensor([[1, 0, 1], [0, 0, 1]])
    t = targets.numpy().astype(np.float64)
    ref = (bce_ref(out.top.double().numpy(), t).sum(1) + bce_ref(out.bottom.double().numpy(), t).sum(1)).mean()
    assert spn_loss(out, targets).item() == pytest.approx(ref, rel=1e-6)


# ---------------------------------------------------------------- SP-CAM and CAM

def test_superpixel_scores_cam_and_decomposition():
    torch.manual_seed(3)
    n_classes, n_sp, h, w = 3, [5, 8], 96, 128
    model = build_spn(n_classes, encoder="small").eval()
    with torch.no_grad():
        model.top.bias.normal_()
        model.bottom.bias.normal_()
        out = model(torch.randn(2, 3, h, w), make_sp(2, h, w, n_sp), n_sp)
        scores = model.superpixel_scores(out.pooled)
        cam = model.cam(out.z)
    wt = model.top.weight.detach().double().numpy()  # (C, K)
    wb = model.bottom.weight.detach().double().numpy()  # (C, Cz)
    pooled = out.pooled.double().numpy()
    z = out.z.double().numpy()

    assert scores.shape == (sum(n_sp), n_classes)
    np.testing.assert_allclose(scores.numpy(), pooled @ wt.T, rtol=1e-5, atol=1e-5)  # no bias

    b, cz, hz, wz = z.shape
    assert cam.shape == (b, n_classes, hz, wz) == (2, n_classes, 12, 16)  # stride 8
    ref = np.zeros((b, n_classes, hz, wz))
    for i in range(b):
        for c in range(n_classes):
            for y in range(hz):
                for x in range(wz):
                    ref[i, c, y, x] = sum(z[i, k, y, x] * wb[c, k] for k in range(cz))
    np.testing.assert_allclose(cam.numpy(), ref, rtol=1e-5, atol=1e-5)

    # SP-CAM decomposition: the top logits are the mean superpixel score plus the bias
    starts = np.cumsum([0] + n_sp)
    s64 = pooled @ wt.T
    for i in range(b):
        top_ref = s64[starts[i]:starts[i + 1]].mean(0) + model.top.bias.detach().double().numpy()
        np.testing.assert_allclose(out.top[i].numpy(), top_ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(scores[starts[i]:starts[i + 1]].mean(0).numpy() + model.top.bias.detach().numpy(),
                                   out.top[i].numpy(), rtol=1e-5, atol=1e-5)
        # classic CAM decomposition: bottom logits = mean CAM over z's locations + bias
        bot_ref = ref[i].mean((1, 2)) + model.bottom.bias.detach().double().numpy()
        np.testing.assert_allclose(out.bottom[i].numpy(), bot_ref, rtol=1e-5, atol=1e-5)
