"""The napari internals of :mod:`spn_napari._widgets.napari_adapter`, each on a real viewer (Qt
canvas, hidden window; run under Xvfb). Each test fails when napari renames, removes or changes
what the dock relies on: then update the adapter, or drop the speed-up it gives."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
from spn_napari._widgets.napari_adapter import (  # noqa: E402
    ACTIVATE_ON_INSERT,
    adding_unselected,
    canvas_widget,
    colormap_rebuilders,
    dims_updater,
    layer_list_views,
    main_window,
    reset_undo_history,
)


def test_dims_updater_is_the_data_handler_that_recomputes_the_dims(make_napari_viewer):
    """Blocked on the data event, a new shape leaves the dims as they were; called once, it
    gives the dims a viewer that was handed the new data directly has."""
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((10, 12), np.float32))
    update = dims_updater(viewer)
    assert update is not None, "napari has no ViewerModel._on_layers_change: update the adapter"
    assert any(isinstance(cb, tuple) and cb[0]() is viewer and cb[1] == update.__name__
               for cb in layer.events.data.callbacks), "it is no longer connected to a layer's data event"
    before = tuple(viewer.dims.range)
    with layer.events.data.blocker(update):
        layer.data = np.zeros((30, 40), np.float32)
    assert tuple(viewer.dims.range) == before
    update()
    reference = make_napari_viewer()
    reference.add_image(np.zeros((30, 40), np.float32))
    assert tuple(viewer.dims.range) == tuple(reference.dims.range) != before


def test_layers_added_unselected_leave_the_selection_and_the_controls_as_they_were(make_napari_viewer):
    """Inside the block, added layers are not selected and the layer-controls panel is not
    switched to them; after it, napari selects an added layer again, as it does by itself."""
    viewer = make_napari_viewer()
    first = viewer.add_image(np.zeros((8, 8), np.float32), name="first")
    assert getattr(viewer.layers, ACTIVATE_ON_INSERT, None) is True, \
        "napari's layer list has no _activate_on_insert switch: update the adapter"
    controls = viewer.window._qt_viewer.controls  # noqa: SLF001 — what a selection switches
    shown = controls.currentWidget()
    with adding_unselected(viewer):
        viewer.add_image(np.zeros((8, 8), np.float32), name="second")
        viewer.add_labels(np.zeros((8, 8), np.int32), name="third")
    assert viewer.layers.selection.active is first and set(viewer.layers.selection) == {first}
    assert controls.currentWidget() is shown
    assert [layer.name for layer in viewer.layers] == ["first", "second", "third"]
    fourth = viewer.add_image(np.zeros((8, 8), np.float32), name="fourth")
    assert viewer.layers.selection.active is fourth


def test_colormap_rebuilders_are_the_vispy_labels_handlers_and_block(make_napari_viewer, monkeypatch):
    """One rebuild per canvas showing a Labels layer, found on its data event; blocked, a data
    change of the same dtype runs none, unblocked it runs each."""
    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((8, 8), np.uint8))
    found = colormap_rebuilders(layer)
    assert len(found) == 1, "no vispy Labels _on_colormap_change on the data event: update the adapter"
    owner = found[0].__self__
    calls = []
    rebuild = found[0]
    monkeypatch.setattr(owner, rebuild.__name__, lambda *a, **k: (calls.append(1), rebuild(*a, **k)))
    (spied,) = colormap_rebuilders(layer)  # napari looks the method up by name on each event
    with layer.events.data.blocker(spied):
        layer.data = np.ones((8, 8), np.uint8)
    assert calls == []
    layer.data = np.full((8, 8), 2, np.uint8)
    assert calls == [1]
    assert colormap_rebuilders(viewer.add_image(np.zeros((8, 8)))) == []  # Image layers: not one


def test_reset_undo_history_forgets_the_previous_image_strokes(make_napari_viewer):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((6, 6), np.uint8))
    with layer.block_history():
        layer.data_setitem((np.array([1, 2]), np.array([3, 4])), 5)
    painted = np.asarray(layer.data).copy()
    layer.undo()  # without the reset, undo takes the stroke back...
    assert not np.asarray(layer.data).any()
    layer.redo()
    np.testing.assert_array_equal(layer.data, painted)
    reset_undo_history(layer)
    layer.undo()  # ...after it, there is nothing to undo
    layer.redo()
    np.testing.assert_array_equal(layer.data, painted)


def test_napari_layer_list_is_a_qlistview_of_the_window(make_napari_viewer):
    viewer = make_napari_viewer()
    window = main_window(viewer)
    layer_list = viewer.window._qt_viewer.layers  # noqa: SLF001 (the test names napari's widgets on purpose)
    assert any(view is layer_list for view in layer_list_views(window)), \
        "napari's layer list is no longer a QListView in the main window: update the adapter"
    assert callable(layer_list.doItemsLayout)


def test_the_main_window_and_the_canvas_are_napari_s_own_qt_widgets(make_napari_viewer):
    """main_window is the QMainWindow that holds the viewer; canvas_widget the widget that the
    canvas draws in, inside it: a key pressed on it reaches the viewer's key bindings."""
    from qtpy.QtWidgets import QMainWindow
    viewer = make_napari_viewer()
    window, canvas = main_window(viewer), canvas_widget(viewer)
    assert isinstance(window, QMainWindow) and window.isAncestorOf(canvas), \
        "napari's main window or canvas widget moved: update the adapter"
    window.resize(800, 600)
    assert window.size().width() == 800
