"""SP-CAM / CAM evidence against a naive full-resolution computation; stored evidence on read."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from spn_napari.data.transforms import fit_to_canvas
from spn_napari.evidence.cam import threshold_maps
from spn_napari.evidence.maps import evidence_maps
from spn_napari.evidence.pseudo_labels import PseudoLabelConfig, image_evidence, make_pseudo_labels
from spn_napari.models.spn import build_spn
from spn_napari.pipeline import run
from spn_napari.train import TrainConfig, train_spn


def test_image_evidence_matches_naive_upsample_and_loop():
    torch.manual_seed(0)
    model = build_spn(3).eval().double()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (37, 50, 3), dtype=np.uint8)
    sp = (np.arange(37 * 50).reshape(37, 50) // 97).astype(np.int32)  # 20 stripes
    sp = np.unique(sp, return_inverse=True)[1].reshape(sp.shape)
    side = 64
    with torch.no_grad():
        model_f = model.float()
        ev = image_evidence(model_f, img, sp, [side], torch.device("cpu"))
        x, _, _ = fit_to_canvas(img, None, side)
        z, feat = model_f.features(x[None])
        # naive: F bilinearly upsampled to the square canvas of side max(H, W), cropped, looped
        up = F.interpolate(feat.double(), size=(50, 50), mode="bilinear", align_corners=False)[0, :, :37, :50]
        w = model_f.top.weight.double()
        ref = np.stack([(w @ up[:, torch.from_numpy(sp == k)].mean(1)).numpy() for k in range(sp.max() + 1)])
        cam_ref = torch.einsum("kyx,ck->cyx", z[0].double(), model_f.bottom.weight.double()).numpy()
    np.testing.assert_allclose(ev.sp_scores, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ev.cam, cam_ref, rtol=1e-4, atol=1e-4)
    assert ev.probs.shape == (3,) and ((ev.probs > 0) & (ev.probs < 1)).all()


def test_pseudo_labels_are_the_thresholded_stored_evidence(sp_project):
    run(train_spn(sp_project, TrainConfig(epochs=1, batch_size=5)))
    run(make_pseudo_labels(sp_project, PseudoLabelConfig(method="sp-cam")))
    for i, info in enumerate(sp_project.images):
        maps = evidence_maps(sp_project, i, "sp-cam")
        assert maps.shape == (len(sp_project.classes), info.height, info.width)
        np.testing.assert_array_equal(sp_project.read("pseudo/sp-cam", i), threshold_maps(maps, info.tags))
        cam = evidence_maps(sp_project, i, "cam")
        assert cam.shape == maps.shape
