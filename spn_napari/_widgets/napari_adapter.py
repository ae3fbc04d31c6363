"""The napari internals the dock relies on, each behind one small function.

napari 0.9 has no public API for these things, and each saves the dock time or keeps undo
per image. Everything else the dock does goes through napari's public API (layer events and their
blockers, ``viewer.canvas.size``, ``viewer.scene.camera``, ``Labels.block_history``, layer
metadata). ``tests/test_napari_adapter.py`` drives each function on a real viewer and fails when
napari renames, removes or changes what it relies on; where an internal is missing at run time,
the function degrades to what napari does by itself (only the time is lost), never raises.

- :func:`dims_updater` — ``ViewerModel._on_layers_change``, the handler napari connects to every
  layer's data event to recompute the dims from all layers' extents (~3-8 ms per layer).
- :func:`colormap_rebuilders` — the vispy Labels layer's ``_on_colormap_change``, connected to the
  layer's data event: it builds a new colormap shader (~10 ms under a software OpenGL), though
  the colours depend only on the colormap and the data's dtype (its own data handler still
  rebuilds them when the dtype changes).
- :func:`reset_undo_history` — ``Labels._reset_history``: undo must not cross from one image's
  data to the next one's.
- :func:`adding_unselected` — ``SelectableEventedList._activate_on_insert``: napari selects each
  layer it adds, and each selection switches the layer-controls panel (~15-25 ms of Qt layout per
  switch); the dock adds its layers in a batch and selects the one it paints on once, after.
- :func:`layer_list_views` — napari's layer list is a ``QListView`` inside the main window: the
  dock lays its rows out before the next frame (see ``PhotoLayers.one_frame``).
- :func:`main_window` and :func:`canvas_widget` — ``Window._qt_window`` and the vispy canvas's
  native Qt widget (``Window._qt_viewer.canvas.native``): scripts size the window for a
  screenshot, and GUI tests press keys and click where a person does, on the canvas.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from qtpy.QtWidgets import QListView, QWidget

__all__ = ["dims_updater", "colormap_rebuilders", "reset_undo_history", "adding_unselected", "layer_list_views", "main_window",
           "canvas_widget", "DIMS_UPDATER", "COLORMAP_REBUILDER", "RESET_HISTORY", "ACTIVATE_ON_INSERT"]

DIMS_UPDATER = "_on_layers_change"  # napari.components.ViewerModel
COLORMAP_REBUILDER = "_on_colormap_change"  # napari._vispy.layers.labels.VispyLabelsLayer
RESET_HISTORY = "_reset_history"  # napari.layers.Labels
ACTIVATE_ON_INSERT = "_activate_on_insert"  # napari.utils.events.containers.SelectableEventedList


def dims_updater(viewer) -> Callable[[], None] | None:
    """The viewer's handler that recomputes its dims from the layers' extents, connected to each
    layer's ``events.data``: block it while replacing several layers' data and call it once
    after; None where napari has no such handler (then each data change updates the dims)."""
    return getattr(viewer, DIMS_UPDATER, None)


def colormap_rebuilders(layer) -> list[Callable]:
    """The colormap-shader rebuilds connected to ``layer.events.data`` (one per canvas showing
    the layer; none for a layer without one, or where napari renamed the handler). Block them
    with ``layer.events.data.blocker(cb)`` while setting data of an unchanged dtype."""
    found = []
    for cb in layer.events.data.callbacks:  # napari stores a method as (weakref(owner), name)
        owner = cb[0]() if isinstance(cb, tuple) else None
        if owner is not None and cb[1] == COLORMAP_REBUILDER:
            found.append(getattr(owner, cb[1]))
    return found


def reset_undo_history(layer) -> None:
    """Forget a Labels layer's undo and redo steps (its data was replaced by another image's).
    Without the internal, undo could bring back a previous image's strokes."""
    reset = getattr(layer, RESET_HISTORY, None)
    if reset is not None:
        reset()


@contextmanager
def adding_unselected(viewer) -> Iterator[None]:
    """While in this block, layers added to ``viewer`` are not selected (napari selects each one,
    and each selection lays the layer-controls panel out anew); select the one wanted after.
    Where napari has no such switch, each added layer is selected, as napari does by itself."""
    layers = viewer.layers
    before = getattr(layers, ACTIVATE_ON_INSERT, None)
    if before is None:
        yield
        return
    setattr(layers, ACTIVATE_ON_INSERT, False)
    try:
        yield
    finally:
        setattr(layers, ACTIVATE_ON_INSERT, before)


def layer_list_views(window: QWidget) -> list[QListView]:
    """The QListViews inside ``window``, napari's layer list among them (others: Qt's own inside
    combo boxes). Walks every widget of the window (~3 ms): look it up once per window."""
    return window.findChildren(QListView)


def main_window(viewer) -> QWidget:
    """The viewer's Qt main window (to resize it, or wait until it is shown)."""
    return viewer.window._qt_window  # noqa: SLF001 — napari 0.9 has no public handle on it


def canvas_widget(viewer) -> QWidget:
    """The Qt widget of the viewer's canvas: where a person's key presses and clicks land."""
    return viewer.window._qt_viewer.canvas.native  # noqa: SLF001 — no public handle either
