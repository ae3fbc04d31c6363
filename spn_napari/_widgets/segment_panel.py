"""The dock's "segment" row: label any open image layer with the open project's current model.

The layer's pixels go to a temporary PNG, ``spn-napari predict`` labels it in a child process
(through the host's run panel: progress, Cancel, and no torch in the viewer's process), and the
mask comes back as a Labels layer "<layer> segmentation" with the project's class names and
colours, placed over its image (same scale and translation)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QWidget

from ..data.images import as_rgb, load_mask
from ..errors import SpnError
from ..jobs import predict_command
from ..napari_io import labels_style

OVERLAYS = ("superpixels", "SP-CAM", "CAM", "Unsure")  # the dock's own image layers that are maps, not images


class SegmentPanel(QWidget):
    """An image-layer choice and a Segment button. ``host`` is the AnnotatorWidget: its
    ``annotator``, ``viewer``, ``runs`` (the run panel) and ``notify()``."""

    def __init__(self, host, parent=None) -> None:
        super().__init__(parent)
        self.host = host
        self.layer = QComboBox()
        # a width that does not follow the layer names: a new layer never relayouts the window
        self.layer.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.layer.setMinimumContentsLength(12)
        self.layer.setToolTip("an open image layer (2-D, gray or RGB) to label with the project's current model")
        self.button = QPushButton("Segment")
        self.button.clicked.connect(lambda: self.segment())
        self._pending: tuple[str, Path, object] | None = None  # (layer name, temp folder, layer)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("segment"))
        row.addWidget(self.layer, 1)
        row.addWidget(self.button)
        layers = host.viewer.layers
        for event in (layers.events.inserted, layers.events.removed, layers.events.moved):
            event.connect(self.refresh)
        host.runs.step_finished.connect(self._on_finished)
        self.refresh()

    def image_layers(self) -> list[str]:
        """Names of the open image layers that can be segmented (not the dock's evidence maps)."""
        from napari.layers import Image as ImageLayer
        return [layer.name for layer in self.host.viewer.layers
                if isinstance(layer, ImageLayer)
                and not (layer.name in OVERLAYS and "spn_project" in layer.metadata)]

    def refresh(self, *_) -> None:
        """Rebuild the layer choice, keeping the chosen layer when it is still open."""
        chosen = self.layer.currentText()
        names = self.image_layers()
        self.layer.blockSignals(True)
        self.layer.clear()
        self.layer.addItems(names)
        if chosen in names:
            self.layer.setCurrentText(chosen)
        self.layer.blockSignals(False)

    def segment(self, name: str | None = None):
        """Label image layer ``name`` (default: the chosen one) in a child process; returns the
        child job, or None (with a notification) when there is nothing to run."""
        host = self.host
        if host.annotator is None:
            host.notify("open a project first: its current model labels the image")
            return None
        name = name or self.layer.currentText()
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
        tmp = Path(tempfile.mkdtemp(prefix="spn-segment-"))
        try:
            Image.fromarray(image).save(tmp / "image.png")
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            host.notify(f"{tmp}: cannot save the image for the model ({exc.strerror or exc}) — free some space",
                        error=True)
            return None
        argv = predict_command(host.annotator.project.root, [tmp / "image.png"], tmp / "masks",
                               device=host.runs.device.currentText())
        job = host.runs.start("predict", argv)
        if job is None:
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        self._pending = (name, tmp, layer)
        return job

    def _on_finished(self, step: str, ok: bool, message: str) -> None:
        if step != "predict" or self._pending is None:
            return
        name, tmp, layer = self._pending
        self._pending = None
        try:
            if ok:
                self._show(name, load_mask(tmp / "masks" / "image.png"), layer)
        except SpnError as exc:
            self.host.notify(str(exc), error=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _show(self, name: str, mask: np.ndarray, layer) -> None:
        """Put ``mask`` (H, W) uint8 into the Labels layer "<name> segmentation" over ``layer``."""
        viewer, target = self.host.viewer, f"{name} segmentation"
        place = {"scale": tuple(layer.scale)[-2:], "translate": tuple(layer.translate)[-2:]}
        if target in viewer.layers:  # a new one: the project (its classes) may have changed since
            viewer.layers.remove(target)
        viewer.add_labels(mask, name=target, opacity=0.6, **labels_style(self.host.annotator.project), **place)
        self.host.notify(f"{target}: labelled with the project's current model")
