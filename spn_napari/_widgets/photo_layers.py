"""The viewer's layers of the shown photo, switched cheaply: new data into the layers that exist
(napari adds the missing ones), the view fitted only when it would change, one window frame.

A switch between cached photos costs napari's layer updates and the frame that follows (~40 ms
under a software OpenGL); what napari would redo for nothing (dims, colormaps, a camera fit, a
second frame for the layer list) is skipped here. napari's internals are reached through
:mod:`.napari_adapter` alone: where they are missing, only the time is lost."""

from __future__ import annotations

import weakref
from contextlib import ExitStack, contextmanager

import numpy as np
from qtpy.QtWidgets import QWidget

from .napari_adapter import adding_unselected, colormap_rebuilders, dims_updater, layer_list_views, reset_undo_history


def set_contrast_limits(layer, limits) -> None:
    """Set an image layer's contrast limits unless they are already these: each set redraws its
    thumbnail."""
    if tuple(layer.contrast_limits) != tuple(limits):
        layer.contrast_limits = limits


class PhotoLayers:
    """The layers ``viewer`` shows for one photo at a time; ``widget`` is the dock (its window's
    layer list is laid out with each frame)."""

    def __init__(self, viewer, widget: QWidget) -> None:
        self.viewer = viewer
        self.widget = widget
        self._fitted: tuple | None = None  # fit_state() right after the last reset_view
        self._list_refs: tuple = (lambda: None, [])  # (window, [its QListViews]) as weakrefs

    def set_layers(self, specs) -> None:
        """Set each layer of ``specs`` (napari LayerData tuples) to its data, adding missing ones,
        with napari's dims recomputed once at most (:meth:`replacing_data`). Added layers are not
        selected (:func:`.napari_adapter.adding_unselected`): the dock selects its labels once."""
        with self.replacing_data(list(self.viewer.layers)), adding_unselected(self.viewer):
            for data, kwargs, kind in specs:
                name = kwargs["name"]
                if name not in self.viewer.layers:
                    getattr(self.viewer, f"add_{kind}")(data, **kwargs)  # napari updates the dims
                    continue
                layer = self.viewer.layers[name]
                layer.data = data
                layer.metadata = kwargs["metadata"]
                if "contrast_limits" in kwargs:
                    set_contrast_limits(layer, kwargs["contrast_limits"])
                if name == "labels":
                    reset_undo_history(layer)  # undo does not cross images

    def set_data(self, name: str, data: np.ndarray, contrast_limits=None) -> None:
        """Replace layer ``name``'s data (and its contrast limits, when given) as :meth:`set_layers`
        does: the evidence of another class, a suggestion's outline, a repeated Segment."""
        layer = self.viewer.layers[name]
        with self.replacing_data([layer]):
            layer.data = data
        if contrast_limits is not None:
            set_contrast_limits(layer, contrast_limits)

    @contextmanager
    def replacing_data(self, layers: list):
        """While ``layers``' data is replaced: napari's dims are recomputed once, after, and only if
        a layer's shape changed (each recomputation costs ~3-8 ms; the dims follow the layers'
        extents alone). napari's vispy Labels layer rebuilds its colormap on every data event
        (~10 ms under a software OpenGL), though the colours depend only on the colormap and the
        data's dtype; so that rebuild is skipped."""
        update = dims_updater(self.viewer)
        shapes = [np.shape(layer.data) for layer in layers]
        with ExitStack() as stack:
            for layer in layers:
                for cb in ([update] if update is not None else []) + colormap_rebuilders(layer):
                    stack.enter_context(layer.events.data.blocker(cb))
            yield
        if update is not None and shapes != [np.shape(layer.data) for layer in layers]:
            update()

    def fit_state(self) -> tuple:
        """What ``reset_view`` depends on (the layers' extents via the dims, the canvas size) and
        what it sets (the camera)."""
        v, cam = self.viewer, self.viewer.scene.camera
        return (tuple(v.dims.range), v.dims.ndisplay, tuple(v.canvas.size), tuple(cam.center), cam.zoom,
                tuple(cam.angles))

    def fit_view(self) -> None:
        """Fit the camera to the layers (``reset_view``), unless it still shows the fit made last
        for the same extents and canvas (a photo of the previous one's shape, a camera nobody
        moved): a refit would change nothing and costs ~5-12 ms of camera and transform events."""
        if self._fitted != self.fit_state():
            self.viewer.reset_view()
            self._fitted = self.fit_state()

    def one_frame(self) -> None:
        """Let the window repaint everything this switch changed in one frame, not two (each frame
        recomposes the whole window: ~12 ms under a software OpenGL). The layer list repaints
        changed rows after a zero-time timer (Qt's deferred item layout), which runs after the
        window's next frame; laying it out now puts its rows into that frame. napari's canvas
        sets each layer's scale factor (1 / zoom) while it draws, and a new value would repaint
        the list again, after the frame: the layers get that same value now."""
        zoom = self.viewer.scene.camera.zoom
        for layer in self.viewer.layers:
            layer.scale_factor = 1 / zoom
        for view in self.list_views():
            if view.isVisible():
                view.doItemsLayout()

    def list_views(self) -> list:
        """The QListViews of the dock's window (napari's layer list among them:
        :func:`.napari_adapter.layer_list_views`), looked up once per window (~3 ms). Weak
        references, as the window owns the dock and must not be kept alive by it; those to views
        that Python does not hold (Qt's own, inside combo boxes) die at once, and are not needed."""
        window = self.widget.window()
        if self._list_refs[0]() is not window:
            self._list_refs = (weakref.ref(window), [weakref.ref(v) for v in layer_list_views(window)])
        return [view for view in (ref() for ref in self._list_refs[1]) if view is not None]
