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
    "Project": "store", "is_project": "store",
    "read_dataset": "data.readers", "write_demo_dataset": "data.synthetic",
    "SuperpixelConfig": "superpixels", "compute_superpixels": "superpixels",
    "TrainConfig": "train", "train_spn": "train", "load_spn": "runtime",
    "PseudoLabelConfig": "inference", "make_pseudo_labels": "inference", "evidence_maps": "evidence",
    "image_evidence": "inference", "EvidenceSettings": "evidence",
    "threshold_maps": "cam", "evaluate_labels": "evaluate", "export_labels": "export",
    "Event": "events", "run": "events", "init_project": "pipeline", "run_demo": "pipeline",
    "SpnError": "errors", "DatasetError": "errors", "ProjectError": "errors", "WeightsError": "errors",
    "build_spn": "models.spn", "superpixel_pool": "ops.superpixel_pool",
    "RoundConfig": "rounds", "run_round": "rounds", "rollback": "round_history",
    "current_labels": "labels", "training_target": "labels",
    "import_corrections": "corrections", "SimulateConfig": "simulate", "simulate": "simulate",
    "DecoupledNet": "models.decoupled", "Segmenter": "segmenter",
    "propagate": "propagate", "PropagateConfig": "propagate", "LiveHead": "propagate",
    "suggest": "suggest", "Suggestion": "suggest", "superpixel_oracle": "effort",
}

__all__ = sorted(_API)

# what listens when a compute step changes a project's labels (spn_napari.label_events)
from . import label_events as _label_events  # noqa: E402

_label_events.listen("spn_napari.suggest", "labels_changed")
_label_events.rank_with("spn_napari.suggest", "live_rows")


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'spn_napari' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
