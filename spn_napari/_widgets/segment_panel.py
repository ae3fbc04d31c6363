"""The dock's "segment" row: label any open image layer with the open project's current model.

The layer's pixels go to a temporary PNG, a long-lived child (``spn-napari serve``,
:mod:`.predict_worker`: no torch in the viewer's process, the model kept loaded between requests)
labels it, and the mask comes back into a Labels layer "<layer> segmentation" with the project's
class names and colours, placed over its image (same scale and translation); the click adds that
layer, empty, and the answer fills it. The child follows the project's current round by itself;
it is replaced when another project opens or the device changes, and stopped with the dock. The
settings (layer, round, tags) are a magicgui form."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, LineEdit
from PIL import Image
from qtpy.QtWidgets import QComboBox, QPushButton, QVBoxLayout, QWidget

from ..data.images import as_rgb, load_mask
from ..errors import SpnError
from ..napari_io import labels_style
from .napari_adapter import adding_unselected
from .predict_worker import PredictWorker

OVERLAYS = ("superpixels", "SP-CAM", "CAM", "Unsure", "Suggestion")  # the dock's own image layers that are maps, not images


class SegmentPanel(QWidget):
    """An image-layer choice and a Segment button. ``host`` is the AnnotatorWidget: its
    ``annotator``, ``viewer``, ``runs`` (the run panel), ``photo_layers``, ``bind_keys()``,
    ``notify()`` (problems) and ``say()`` (Segment started, done: the status line alone)."""

    def __init__(self, host, parent=None) -> None:
        super().__init__(parent)
        self.host = host
        self.layer = ComboBox(label="layer", choices=self.image_layers,
                              tooltip="an open image layer (2-D, gray or RGB) to label with the project's model")
        # a width that does not follow the layer names: a new layer never relayouts the window
        self.layer.native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.layer.native.setMinimumContentsLength(12)
        self.round = ComboBox(label="round", choices=self._round_choices,
                              tooltip="the model: the project's current round's, or an earlier round's")
        self.tags = LineEdit(label="tags", tooltip="the classes in the image, separated by ';' or ','; left "
                                                   "empty, the model's classifier chooses them (probability > 0.5)")
        self.tags.native.setPlaceholderText("e.g. cow; grass (empty: the model decides)")
        self.form = Container(widgets=[self.layer, self.round, self.tags], labels=True)
        self.form.native.layout().setContentsMargins(0, 0, 0, 0)
        self.button = QPushButton("Segment")
        self.button.clicked.connect(lambda: self.segment())
        self.worker: PredictWorker | None = None
        self._pending: dict[int, tuple[str, Path, object]] = {}  # request id -> (layer name, temp folder, layer)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.form.native)
        layout.addWidget(self.button)
        layers = host.viewer.layers
        for event in (layers.events.inserted, layers.events.removed, layers.events.moved):
            event.connect(self.refresh)
        self.refresh()

    def _round_choices(self, *_) -> list:
        """('current', None), then each round of the open project as (name, number)."""
        project = self.host.annotator.project if self.host.annotator is not None else None
        rounds = [e["round"] for e in project.rounds()] if project is not None else []
        return [("current", None)] + [(f"round {r}" + (" (SPN)" if r == 0 else ""), r) for r in rounds]

    def image_layers(self, *_) -> list[str]:
        """Names of the open image layers that can be segmented (not the dock's evidence maps)."""
        from napari.layers import Image as ImageLayer
        return [layer.name for layer in self.host.viewer.layers
                if isinstance(layer, ImageLayer)
                and not (layer.name in OVERLAYS and "spn_project" in layer.metadata)]

    def refresh(self, *_) -> None:
        """Rebuild the layer and round choices (layers come and go, rounds are made and rolled
        back), keeping the chosen ones while they exist."""
        self.layer.reset_choices()
        self.round.reset_choices()

    def segment(self, name: str | None = None) -> int | None:
        """Label image layer ``name`` (default: the chosen one) in the Segment child; returns the
        request's id, or None (with a notification) when there is nothing to run."""
        host = self.host
        if host.annotator is None:
            host.notify("open a project first: its current model labels the image")
            return None
        name = name or self.layer.value
        if not name or name not in host.viewer.layers:
            host.notify("open an image layer first (File › Open), then choose it beside Segment")
            return None
        layer = host.viewer.layers[name]
        data = np.asarray(layer.data[0] if getattr(layer, "multiscale", False) else layer.data)
        if data.ndim != (3 if layer.rgb else 2):
            host.notify(f"{name}: a {data.ndim}-D {'RGB ' if layer.rgb else ''}layer — segment a 2-D image "
                        f"(one plane of a stack: add it as a layer of its own)", error=True)
            return None
        try:
            image = as_rgb(data)  # (H, W, 3) uint8
        except ValueError as exc:
            host.notify(f"{name}: {exc}", error=True)
            return None
        tags = [t.strip() for t in self.tags.value.replace(",", ";").split(";") if t.strip()] or None
        tmp = Path(tempfile.mkdtemp(prefix="spn-segment-"))
        try:
            Image.fromarray(image).save(tmp / "image.png", compress_level=0)  # uncompressed: a few ms, not ~25 ms, on the click
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            host.notify(f"{tmp}: cannot save the image for the model ({exc.strerror or exc}) — free some space",
                        error=True)
            return None
        self._result_layer(name, layer, image.shape[:2])  # napari's set-up of a new layer, on the click
        worker = self._worker()
        first = not worker.running()
        rid = worker.request(tmp / "image.png", tmp / "mask.png", tags, self.round.value)
        self._pending[rid] = (name, tmp, layer)
        host.say(f"Segment: labelling {name}" + (" (loading the model first: a few seconds)" if first else ""))
        return rid

    def _worker(self) -> PredictWorker:
        """The child for the open project and the chosen device (a new one when either changed)."""
        root, device = self.host.annotator.project.root, self.host.runs.device.value
        if self.worker is None or (self.worker.project, self.worker.device) != (root, device):
            self.stop()
            self.worker = PredictWorker(root, device, self)
            self.worker.answered.connect(self._answered)
            self.worker.notice.connect(self.host.notify)
        return self.worker

    def stop(self) -> None:
        """Stop the child (the dock closes, another project opens); pending requests are dropped."""
        if self.worker is not None:
            self.worker.stop()
            self.worker.deleteLater()
            self.worker = None
        names = {name for name, _, _ in self._pending.values()}
        for _, tmp, _ in self._pending.values():
            shutil.rmtree(tmp, ignore_errors=True)
        self._pending.clear()
        for name in names:
            self._drop_empty(name)

    def _answered(self, answer: dict) -> None:
        pending = self._pending.pop(answer.get("id"), None)
        if pending is None:
            return
        name, tmp, layer = pending
        try:
            if answer["event"] == "done":
                self._show(name, load_mask(Path(answer["out"])), layer, answer.get("round"))
            else:
                self._drop_empty(name)
                self.host.notify(f"Segment {name}: {answer.get('message', 'failed')}", error=True)
        except SpnError as exc:
            self._drop_empty(name)
            self.host.notify(str(exc), error=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _same_classes(layer, style: dict) -> bool:
        """Whether a segmentation layer shows the classes of ``style`` (a :func:`labels_style`)."""
        try:
            return list(layer.features["class"]) == list(style["features"]["class"])
        except (KeyError, AttributeError):
            return False

    def _result_layer(self, name: str, layer, shape: tuple[int, int]):
        """The Labels layer "<name> segmentation" over image layer ``layer``, ready for a (H, W)
        mask of ``shape``: the one there when it shows the project's classes at that size (placed
        over ``layer`` again), else a new, empty one. Made on Segment's click, not when the answer
        comes: napari's set-up of a new Labels layer (its visual, overlays and controls; the
        first Segment's block in docs/plugin.md) then lands on the click the person waits on,
        never in the middle of a stroke; the answer only fills pixels."""
        viewer, target = self.host.viewer, f"{name} segmentation"
        place = {"scale": tuple(layer.scale)[-2:], "translate": tuple(layer.translate)[-2:]}
        style = labels_style(self.host.annotator.project)
        old = viewer.layers[target] if target in viewer.layers else None
        if old is not None and self._same_classes(old, style) and np.shape(old.data) == tuple(shape):
            for key, value in place.items():
                if tuple(getattr(old, key))[-2:] != tuple(value):
                    setattr(old, key, value)
            return old
        if old is not None:  # another project's classes, or another size
            viewer.layers.remove(target)
        with adding_unselected(viewer):  # the dock's labels stay selected: keys 1–9 keep choosing classes
            new = viewer.add_labels(np.zeros(shape, np.uint8), name=target, opacity=0.6, **style, **place)
        new.metadata["spn_empty"] = True  # no answer in it yet
        self.host.bind_keys(new)
        return new

    def _drop_empty(self, name: str) -> None:
        """Remove "<name> segmentation" when it is still the empty layer the click made (the
        answer was an error): no empty result is left behind."""
        target = f"{name} segmentation"
        layers = self.host.viewer.layers
        if target in layers and layers[target].metadata.get("spn_empty") \
                and not any(n == name for n, _, _ in self._pending.values()):
            layers.remove(target)

    def _show(self, name: str, mask: np.ndarray, layer, model_round: int | None = None) -> None:
        """Put ``mask`` (H, W) uint8 into the Labels layer "<name> segmentation" over ``layer``
        (the one the click made, or a new one when it was removed or no longer fits)."""
        result = self._result_layer(name, layer, mask.shape)
        self.host.photo_layers.set_data(result.name, mask)
        result.metadata.pop("spn_empty", None)
        model = "the SPN" if not model_round else f"round {model_round}"
        self.host.say(f"{result.name}: labelled with the project's current model ({model})")
