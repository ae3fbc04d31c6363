"""The README's demo claim on tiny data: on the generated demo, SP-CAM's labels beat CAM's.

The README's demo table (copied from ``benchmarks/results/demo.json``) is a 200-image run of
minutes. Here the same pipeline (the demo's generator, ~100 superpixels an image, the small encoder
trained from scratch, the paper's 50 %-of-max rule) runs on 40 images of 96 px for 10 epochs, and
the reference is CAM from the same SPN. At that size SP-CAM's lead shows in mean class accuracy
(it finds the small classes that CAM's blobs miss), while the mIoUs are level or SP-CAM's ahead:
measured with one thread, mean class accuracy SP-CAM 0.730 against CAM 0.489 and mIoU 0.434
against 0.444 (seed 0, the one tested); 0.847 against 0.459 and 0.552 against 0.412 (seed 1).

The README's other demo claim, that round 1 raises mIoU over the SP-CAM labels it trains on, is
not checked here: at this size a 5-epoch round scored 0.429 against SP-CAM's 0.434 (seed 0) and
took longer than the whole SPN. Not timed.
"""

from __future__ import annotations

from spn_napari.data.synthetic import write_demo_dataset
from spn_napari.evaluate import evaluate_labels
from spn_napari.events import run
from spn_napari.inference import PseudoLabelConfig, make_pseudo_labels
from spn_napari.pipeline import DEMO_ENCODER, init_project
from spn_napari.superpixels import SuperpixelConfig, compute_superpixels
from spn_napari.train import TrainConfig, train_spn


def test_sp_cam_beats_cam_on_the_generated_demo(tmp_path):
    data = write_demo_dataset(tmp_path / "data", n=40, size=96, seed=0)
    project = init_project(tmp_path / "p", data)
    run(compute_superpixels(project, SuperpixelConfig(n_segments=100)))  # as `spn-napari demo`
    run(train_spn(project, TrainConfig(epochs=10, device="cpu", seed=0, encoder=DEMO_ENCODER)))
    scores = {}
    for method in ("cam", "sp-cam"):
        run(make_pseudo_labels(project, PseudoLabelConfig(method=method, device="cpu")))
        scores[method] = evaluate_labels(project, f"pseudo/{method}")
    sp_cam, cam = scores["sp-cam"], scores["cam"]
    print({m: (round(s["miou"], 3), round(s["mean_class_accuracy"], 3)) for m, s in scores.items()})
    assert sp_cam["mean_class_accuracy"] > cam["mean_class_accuracy"] + 0.1
    assert sp_cam["miou"] > cam["miou"] - 0.03
