"""spn-napari: pixel masks from image-level tags (Superpixel Pooling Network, SP-CAM, napari).

The public engine API, imported lazily so ``import spn_napari`` stays light (napari imports it
to find the plugin)::

    import spn_napari as spn
    spn.write_demo_dataset("demo-data")
    project = spn.init_project("proj", "demo-data")
    spn.run(spn.compute_superpixels(project))
    spn.run(spn.train_spn(project, spn.TrainConfig(epochs=30)))
    spn.run(spn.make_pseudo_labels(project, spn.PseudoLabelConfig()))   # the demo: SP-CAM
    print(spn.evaluate_labels(project, "pseudo/sp-cam")["miou"])
    project.save_correction(0, labels, set_mask, review="reviewed")   # an annotator's fix
    spn.run(spn.run_round(project, spn.RoundConfig()))                # DecoupledNet round

Every long call is a generator of :class:`Event`; iterate it (or ``spn.run`` it) to do the work,
stop iterating to cancel.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "Project": "project.store", "is_project": "project.store",
    "read_dataset": "data.readers", "write_demo_dataset": "data.synthetic",
    "SuperpixelConfig": "evidence.superpixels", "compute_superpixels": "evidence.superpixels",
    "TrainConfig": "train", "train_spn": "train", "load_spn": "runtime",
    "PseudoLabelConfig": "evidence.pseudo_labels", "make_pseudo_labels": "evidence.pseudo_labels",
    "evidence_maps": "evidence.maps",
    "image_evidence": "evidence.pseudo_labels", "EvidenceSettings": "evidence.maps",
    "threshold_maps": "evidence.cam", "evaluate_labels": "evaluate", "export_labels": "predict.export",
    "Event": "events", "run": "events", "init_project": "pipeline", "run_demo": "pipeline",
    "SpnError": "errors", "DatasetError": "errors", "ProjectError": "errors", "WeightsError": "errors",
    "build_spn": "models.spn", "superpixel_pool": "ops.superpixel_pool",
    "RoundConfig": "rounds.refine", "run_round": "rounds.refine", "rollback": "project.history",
    "current_labels": "labels", "training_target": "labels",
    "import_corrections": "review.corrections", "SimulateConfig": "review.simulate", "simulate": "review.simulate",
    "DecoupledNet": "models.decoupled", "Segmenter": "predict.segmenter",
    "propagate": "live.head", "PropagateConfig": "live.head", "LiveHead": "live.head",
    "suggest": "review.suggest", "Suggestion": "review.suggest", "superpixel_oracle": "review.effort",
}

__all__ = sorted(_API)

# what listens when a compute step changes a project's labels (spn_napari.label_events)
from . import label_events as _label_events  # noqa: E402

_label_events.listen("spn_napari.review.suggest", "labels_changed")
_label_events.rank_with("spn_napari.review.suggest", "live_rows")


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'spn_napari' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
