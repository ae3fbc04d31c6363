"""The README's claims on tiny data: on the generated demo, SP-CAM's labels beat CAM's, and a
refinement round trained on the labels plus corrections raises mIoU on the images nobody corrected.

The README's demo table (copied from ``benchmarks/results/demo.json``) is a 200-image run of
minutes. Here the same pipeline (the demo's generator, ~100 superpixels an image, the small encoder
trained from scratch, the paper's 50 %-of-max rule, a round with its default epochs) runs on 40
images of 96 px, and the references are CAM from the same SPN and the SP-CAM labels the round
starts from. At that size SP-CAM's lead shows in mean class accuracy (it finds the small classes
that CAM's blobs miss), while the mIoUs are level or SP-CAM's ahead: measured with one thread,
mean class accuracy SP-CAM 0.730–0.734 against CAM 0.489 and mIoU 0.434–0.442 against 0.444
(seed 0, the one tested; two runs); 0.847 against 0.459 and 0.552 against 0.412 (seed 1).

Round 1 (its default 9 epochs) with every fourth image corrected with its true mask, scored on the
30 images nobody corrected against the SP-CAM labels it starts from: 0.694 against 0.436 (seed 0),
0.781 against 0.495 (seed 1). Without corrections a round is not reliably better at this size
(0.484 against 0.434 for seed 0, 0.467 against 0.482 for seed 1), so that claim is not asserted
here: the README's demo table shows it at 200 images of 160 px (``benchmarks/results/demo.json``),
and ``docs/real-photos.md`` gives its +0.004 on msrc-dev. Not timed.
"""

from __future__ import annotations

import numpy as np
import pytest

from spn_napari.data.synthetic import write_demo_dataset
from spn_napari.evaluate import evaluate_labels, round_metrics
from spn_napari.events import run
from spn_napari.evidence.pseudo_labels import PseudoLabelConfig, make_pseudo_labels
from spn_napari.evidence.superpixels import SuperpixelConfig, compute_superpixels
from spn_napari.pipeline import DEMO_ENCODER, init_project
from spn_napari.project.kinds import pseudo_labels
from spn_napari.rounds.refine import RoundConfig, run_round
from spn_napari.train import TrainConfig, train_spn


@pytest.fixture(scope="module")
def demo40(tmp_path_factory):
    """40 demo images of 96 px through superpixels, a 10-epoch SPN, CAM and SP-CAM labels (SP-CAM
    last, so the project's labels are SP-CAM's), and their scores."""
    tmp = tmp_path_factory.mktemp("claims")
    data = write_demo_dataset(tmp / "data", n=40, size=96, seed=0)
    project = init_project(tmp / "p", data)
    run(compute_superpixels(project, SuperpixelConfig(n_segments=100)))  # as `spn-napari demo`
    run(train_spn(project, TrainConfig(epochs=10, device="cpu", seed=0, encoder=DEMO_ENCODER)))
    scores = {}
    for method in ("cam", "sp-cam"):
        run(make_pseudo_labels(project, PseudoLabelConfig(method=method, device="cpu")))
        scores[method] = evaluate_labels(project, pseudo_labels(method))
    print({m: (round(s["miou"], 3), round(s["mean_class_accuracy"], 3)) for m, s in scores.items()})
    return project, scores


def test_sp_cam_beats_cam_on_the_generated_demo(demo40):
    _, scores = demo40
    sp_cam, cam = scores["sp-cam"], scores["cam"]
    assert sp_cam["mean_class_accuracy"] > cam["mean_class_accuracy"] + 0.1
    assert sp_cam["miou"] > cam["miou"] - 0.03


def test_a_round_with_corrections_raises_miou_on_the_images_nobody_corrected(demo40):
    """Every fourth image corrected with its true mask, then round 1 from SP-CAM's labels (round 0);
    both rounds scored on the other 30 images."""
    project, scores = demo40
    for i in range(0, len(project), 4):
        gt = project.ground_truth(i)
        project.save_correction(i, np.where(gt == 255, 0, gt), gt != 255, review="reviewed")
    run(run_round(project, RoundConfig(device="cpu", seed=0, start_from="sp-cam")))
    before, after = round_metrics(project, 0, None), round_metrics(project, 1, 0)
    print(f"images nobody corrected: round 0 (SP-CAM) mIoU {before['miou_unreviewed']:.3f}, "
          f"round 1 {after['miou_unreviewed']:.3f}")
    assert after["corrected"] == before["corrected"] == 10
    assert before["miou_model"] == pytest.approx(scores["sp-cam"]["miou"])  # round 0 is the SP-CAM labels
    assert after["miou_unreviewed"] > before["miou_unreviewed"] + 0.1
