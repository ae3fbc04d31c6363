"""The napari plugin, driven headlessly (pytest-qt + napari's make_napari_viewer under Xvfb):
manifest, reader, layers and class names, superpixel fill + undo, class swap, accept, saving on
image switch, reopening in a new viewer, the image list (an Accept updates its one row; sorting,
by confidence too; a click shows the row's image), and a folder that is not a project."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from spn_napari.napari_io import get_reader, read_project_layers
from spn_napari.project.store import Project

from conftest import click_row

pytest.importorskip("napari")
from spn_napari._widgets.annotator_widget import AnnotatorWidget  # noqa: E402
from spn_napari._widgets.napari_adapter import canvas_widget, main_window  # noqa: E402


def test_manifest_validates():
    r = subprocess.run([sys.executable, "-m", "npe2", "validate", "spn-napari"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "valid" in r.stdout, r.stdout + r.stderr


def test_reader_takes_projects_only(labelled_project, tmp_path):
    assert get_reader(str(tmp_path)) is None
    assert get_reader(str(labelled_project.root / "project.db")) is not None
    names = [kw["name"] for _, kw, _ in read_project_layers(labelled_project.root)]
    assert names == ["image", "superpixels", "SP-CAM", "CAM", "Unsure", "labels"]


def test_layers_and_class_names(widget, labelled_project):
    v = widget.viewer
    for name in ("image", "superpixels", "SP-CAM", "CAM", "Unsure", "labels"):
        assert name in v.layers
    labels = v.layers["labels"]
    np.testing.assert_array_equal(labels.data, labelled_project.read("pseudo/sp-cam", 0))
    assert list(labels.features["class"]) == ["background", *labelled_project.classes]
    for c, colour in enumerate(labelled_project.colors):
        rgba = labels.colormap.map(np.array([c + 1]))[0]
        expected = [int(colour[k:k + 2], 16) / 255 for k in (1, 3, 5)]
        np.testing.assert_allclose(rgba[:3], expected, atol=0.01)
    sp = labelled_project.read("superpixels", 0)
    contours = v.layers["superpixels"]  # an Image layer: 1 on contours, drawn white; 0 transparent
    h, w = sp.shape
    ref = np.zeros((h, w), bool)  # a pixel whose right or lower neighbour is another superpixel
    for y in range(h):
        for x in range(w):
            ref[y, x] = (x + 1 < w and sp[y, x] != sp[y, x + 1]) or (y + 1 < h and sp[y, x] != sp[y + 1, x])
    np.testing.assert_array_equal(np.asarray(contours.data), ref.astype(np.uint8))
    assert tuple(contours.contrast_limits) == (0, 1)
    np.testing.assert_allclose(contours.colormap.map(np.array([0.0, 1.0])), [[0, 0, 0, 0], [1, 1, 1, 1]])


def test_hovering_a_label_names_its_class_in_the_status_bar(widget, labelled_project):
    layer = widget.viewer.layers["labels"]
    data = np.asarray(layer.data)
    names = ["background", *labelled_project.classes]
    for value in np.unique(data):
        y, x = np.argwhere(data == value)[0]
        status = layer.get_status((int(y), int(x)), world=True)
        assert f"class: {names[value]}" in status["value"], status


def test_a_switched_to_image_draws_as_when_opened_afresh(labelled_project, make_napari_viewer):
    """A switch sets only what changes (dims once, a refit only when needed, the labels' colour
    shader kept): the canvas shows, pixel for pixel, what a new viewer opened on that image shows."""
    from qtpy.QtWidgets import QApplication

    def docked(image: int) -> AnnotatorWidget:
        w = AnnotatorWidget(make_napari_viewer(show=True))  # shown: a hidden canvas draws nothing
        w.propagate.setChecked(False)  # the live head has tests of its own
        w.viewer.window.add_dock_widget(w)
        w.viewer.window.resize(1200, 800)  # the same canvas size in both windows
        QApplication.processEvents()
        assert w.open_project(labelled_project.root, image=image)
        w.timer.stop()
        return w

    switched = docked(0)
    for i in (1, 2, 1, 3):
        switched.show_image(i)
    shown = switched.viewer.screenshot(canvas_only=True, flash=False)
    assert shown[..., :3].std() > 10  # the image, its contours and labels, not an empty canvas
    np.testing.assert_array_equal(docked(3).viewer.screenshot(canvas_only=True, flash=False), shown)


def _project_of_shapes(root, shapes) -> Project:
    """A project (no superpixels or labels yet) of random images with these (H, W) shapes."""
    from PIL import Image

    from spn_napari.data.readers import read_dataset
    data = root / "data"
    (data / "images").mkdir(parents=True)
    (data / "classes.txt").write_text("cat\ndog\n")
    rng = np.random.default_rng(0)
    lines = ["image,labels"]
    for k, shape in enumerate(shapes):
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(data / "images" / f"im{k}.png")
        lines.append(f"im{k}.png,cat")
    (data / "labels.csv").write_text("\n".join(lines) + "\n")
    return Project.create(root / "project", read_dataset(data))


def test_opening_a_smaller_project_over_a_shown_image_beyond_its_end(widget, tmp_path):
    """The shown image's index belongs to the old project: opening one with fewer images (the class
    list refilled, the image list reloaded) reads nothing at that index from the new one."""
    widget.show_image(len(widget.annotator.project) - 1)
    small = _project_of_shapes(tmp_path, [(40, 50), (40, 50)])
    assert widget.open_project(small.root)
    assert widget.current in (0, 1) and widget.image_list.rowCount() == 2
    np.testing.assert_array_equal(widget.viewer.layers["image"].data, small.image(widget.current))


def test_the_view_is_refit_only_when_the_fit_changes(make_napari_viewer, tmp_path):
    """Another shape refits the camera and updates the dims; the same shape with the camera still
    at its fit changes neither (a refit would give the same camera); a moved camera is refit."""
    project = _project_of_shapes(tmp_path, [(40, 50), (40, 50), (30, 60)])
    w = AnnotatorWidget(make_napari_viewer())
    w.propagate.setChecked(False)  # the live head has tests of its own
    w.viewer.window.add_dock_widget(w)
    assert w.open_project(project.root, image=0)
    v, cam = w.viewer, w.viewer.scene.camera
    moves = []
    cam.events.center.connect(lambda e: moves.append("center"))
    cam.events.zoom.connect(lambda e: moves.append("zoom"))
    dims = []
    v.dims.events.range.connect(lambda e: dims.append(e.value))

    def fit() -> tuple:
        before = (tuple(cam.center), cam.zoom)
        v.reset_view()
        after = (tuple(cam.center), cam.zoom)
        cam.center, cam.zoom = before
        return after

    w.show_image(1)  # same shape, camera untouched
    np.testing.assert_array_equal(v.layers["image"].data, project.image(1))
    assert moves == [] and dims == []
    assert (tuple(cam.center), cam.zoom) == fit()

    w.show_image(2)  # another shape: new dims, refit
    assert [(r.start, r.stop) for r in v.dims.range] == [(0, 29), (0, 59)] and len(dims) == 1
    assert moves and (tuple(cam.center), cam.zoom) == fit()

    w.show_image(0)
    cam.zoom *= 3  # the person zooms in; the next image (same shape) is shown whole again
    moves.clear()
    w.show_image(1)
    assert moves and (tuple(cam.center), cam.zoom) == fit()
    w.timer.stop()


def test_superpixel_fill_paints_exactly_one_superpixel_and_undoes(widget, labelled_project):
    sp = labelled_project.read("superpixels", 0)
    layer = widget.viewer.layers["labels"]
    before = np.array(layer.data)
    target = 3
    # a superpixel not already of the target class
    sid = next(s for s in np.unique(sp) if (before[sp == s] != target).any())
    r, c = np.argwhere(sp == sid)[0]
    widget.choose_class(target)
    widget.sp_fill.setChecked(True)
    assert widget.fill_superpixels([(r, c)]) == int((sp == sid).sum())
    after = np.asarray(layer.data)
    np.testing.assert_array_equal(after[sp == sid], target)
    np.testing.assert_array_equal(after[sp != sid], before[sp != sid])
    layer.undo()
    np.testing.assert_array_equal(np.asarray(layer.data), before)


def test_swap_class_is_one_step(widget):
    layer = widget.viewer.layers["labels"]
    before = np.array(layer.data)
    a = int(next(v for v in np.unique(before) if v > 0))
    changed = widget.swap(a, 2 if a != 2 else 1)
    assert changed == int((before == a).sum()) and not (np.asarray(layer.data) == a).any()
    layer.undo()
    np.testing.assert_array_equal(np.asarray(layer.data), before)


def test_accept_saves_and_a_new_viewer_finds_the_correction(widget, labelled_project, make_napari_viewer):
    sp = labelled_project.read("superpixels", 0)
    widget.choose_class(4)
    r, c = np.argwhere(sp == sp[0, 0])[0]
    widget.fill_superpixels([(r, c)])
    painted = np.array(widget.viewer.layers["labels"].data)
    widget.accept()  # saves, marks reviewed, moves on to the next unreviewed image
    assert widget.current != 0
    p = Project(labelled_project.root)
    assert p.review(0) == "reviewed"
    labels, set_mask = p.correction(0)
    assert set_mask.all()
    np.testing.assert_array_equal(labels, painted)

    # an edit on another image is saved when the image is switched
    shown = widget.current
    sp2 = labelled_project.read("superpixels", shown)
    base = np.asarray(widget.viewer.layers["labels"].data)[sp2 == sp2[0, 0]]
    widget.choose_class(next(v for v in (1, 2, 3, 4) if not (base == v).any()))
    widget.fill_superpixels([(0, 0)])
    edited = np.array(widget.viewer.layers["labels"].data)
    widget.show_image(0)
    again = AnnotatorWidget(make_napari_viewer())
    again.propagate.setChecked(False)  # the live head has tests of its own
    assert again.open_project(labelled_project.root, image=shown)
    np.testing.assert_array_equal(np.asarray(again.viewer.layers["labels"].data), edited)
    assert (Project(labelled_project.root).correction(shown)[1] == (sp2 == sp2[0, 0])).all()
    again.timer.stop()


def test_shortcuts_work_on_the_canvas_with_the_labels_layer_selected(widget, labelled_project, qtbot):
    """A, R, P and N pressed where annotators press them: on the canvas while the labels layer is
    selected, whose own keys would otherwise win (napari's Labels layer binds P, for one)."""
    labels = widget.viewer.layers["labels"]
    assert widget.viewer.layers.selection.active is labels and widget.current == 0
    canvas = canvas_widget(widget.viewer)
    qtbot.keyClick(canvas, "a")  # accept image 0, on to the next unreviewed: 1
    assert Project(labelled_project.root).review(0) == "reviewed" and widget.current == 1
    qtbot.keyClick(canvas, "r")  # reject image 1, on to 2
    assert Project(labelled_project.root).review(1) == "rejected" and widget.current == 2
    qtbot.keyClick(canvas, "p")  # previous: 1
    assert widget.current == 1 and labels.mode == "paint"
    qtbot.keyClick(canvas, "n")  # next unreviewed after 1: 2
    assert widget.current == 2
    np.testing.assert_array_equal(np.asarray(labels.data), labelled_project.read("pseudo/sp-cam", 2))


def _cells(model) -> list[list[str]]:
    """Every cell's text of the image list, row by row."""
    return [[model.data(model.index(r, c)) for c in range(model.columnCount())] for r in range(model.rowCount())]


def test_image_list_sorts_and_a_click_shows_that_image(widget, labelled_project, qtbot):
    from qtpy.QtCore import Qt
    widget.accept()  # image 0 reviewed: the status column shows it
    p = Project(labelled_project.root)
    model = widget.image_list
    expected = {im.name: (p.review(i), ", ".join(p.classes[c] for c in im.tags)) for i, im in enumerate(p.images)}
    assert expected[p.images[0].name][0] == "reviewed"
    widget.table.sortByColumn(0, Qt.SortOrder.DescendingOrder)  # as a click on the header does
    names = [row[0] for row in _cells(model)]
    assert names == sorted(expected, reverse=True)
    for r, row in enumerate(_cells(model)):
        assert (row[1], row[2]) == expected[row[0]]
        assert row[3] == "—"  # no round yet: no confidence
        assert p.images[model.image_at(r)].name == row[0] and model.row_of(model.image_at(r)) == r
        assert model.data(model.index(r, 0), Qt.ItemDataRole.UserRole) == model.image_at(r)
    row = model.rowCount() - 1  # the first image by name, now last
    click_row(widget, qtbot, row)
    assert widget.current == model.image_at(row) == [im.name for im in p.images].index(names[-1])
    assert widget.table.currentIndex().row() == row  # the shown image's row is the selected one


def test_accept_updates_its_row_alone(widget, labelled_project):
    """Accept changes one status: exactly one dataChanged, for that image's status cell, and no
    reset or re-layout of the list (which would redo every row); the other cells are as they were."""
    model = widget.image_list
    before = _cells(model)
    signals = []
    model.dataChanged.connect(lambda top, bottom, *roles: signals.append(("dataChanged", top, bottom)))
    for name in ("modelReset", "modelAboutToBeReset", "layoutChanged", "rowsInserted", "rowsRemoved"):
        getattr(model, name).connect(lambda *args, name=name: signals.append((name,)))
    row = model.row_of(0)
    widget.accept()
    assert widget.current != 0
    assert [s[0] for s in signals] == ["dataChanged"]
    _, top, bottom = signals[0]
    assert (top.row(), top.column(), bottom.row(), bottom.column()) == (row, 1, row, 1)
    after = _cells(model)
    assert after[row][1] == "reviewed" == Project(labelled_project.root).review(0)
    after[row][1] = before[row][1]
    assert after == before
    shown = widget.current
    widget.reject()  # the image shown next, rejected: its row alone again
    assert [s[0] for s in signals] == ["dataChanged", "dataChanged"]
    assert signals[1][1].row() == model.row_of(shown)
    assert model.data(model.index(model.row_of(shown), 1)) == "rejected"


def test_sorting_by_confidence_follows_the_round_and_a_click_shows_that_image(
        _round_project, make_napari_viewer, qtbot, tmp_path):
    """The confidence column is 1 - the round's uncertainty; sorting by it orders the rows by those
    confidences (both ways), the selection follows its image, and a click shows that row's image."""
    import shutil

    from qtpy.QtCore import Qt

    from spn_napari.project.history import round_uncertainty
    root = tmp_path / "project"
    shutil.copytree(_round_project, root)
    p = Project(root)
    confidence = 1.0 - round_uncertainty(p)  # the numpy reference
    assert len(np.unique(np.round(confidence, 3))) > 1
    w = AnnotatorWidget(make_napari_viewer())
    w.propagate.setChecked(False)  # the live head has tests of its own
    w.viewer.window.add_dock_widget(w)
    assert w.open_project(root, image=2)
    w.timer.stop()
    model = w.image_list
    for order in (Qt.SortOrder.DescendingOrder, Qt.SortOrder.AscendingOrder):
        w.table.sortByColumn(3, order)
        images = [model.image_at(r) for r in range(model.rowCount())]
        assert sorted(images) == list(range(len(p)))
        shown = np.array([float(model.data(model.index(r, 3))) for r in range(model.rowCount())])
        np.testing.assert_allclose(shown, confidence[images], atol=5e-4)  # each row its image's
        ref = np.round(confidence[images], 3)
        assert (np.diff(ref) <= 0).all() if order == Qt.SortOrder.DescendingOrder else (np.diff(ref) >= 0).all()
        assert w.table.currentIndex().row() == model.row_of(2) and model.image_at(model.row_of(2)) == 2
    row = 0 if model.image_at(0) != 2 else 1  # the least confident image (not the shown one)
    click_row(w, qtbot, row)
    assert w.current == model.image_at(row) != 2
    np.testing.assert_array_equal(w.viewer.layers["image"].data, p.image(w.current))


def test_the_class_choice_shows_that_class_evidence(widget, labelled_project):
    """SP-CAM and CAM layers show the chosen class's map (as the project stores it, at the image's
    size), and the brush paints that class."""
    view = widget.annotator.view(0)
    for c in range(1, len(labelled_project.classes) + 1):
        widget.choose_class(c)
        for method in ("sp-cam", "cam"):
            np.testing.assert_array_equal(np.asarray(widget.viewer.layers[method.upper()].data),
                                          view.evidence[method][c - 1])
        assert widget.viewer.layers["labels"].selected_label == c


def test_the_writer_saves_a_labels_layer_as_a_palette_png(widget, labelled_project, tmp_path):
    """File › Save Selected Layers through napari to our npe2 writer: a PNG whose pixel values are
    the class indices and whose palette is the project's colours, as `spn-napari export` writes."""
    import napari
    from PIL import Image
    layer = widget.viewer.layers["labels"]
    out = napari.save_layers(str(tmp_path / "mask.png"), [layer], plugin="spn-napari")
    assert out == [str(tmp_path / "mask.png")]
    im = Image.open(out[0])
    assert im.mode == "P"
    np.testing.assert_array_equal(np.asarray(im), np.asarray(layer.data))
    palette = np.array(im.getpalette()[:3 * (len(labelled_project.classes) + 1)]).reshape(-1, 3)
    for c, colour in enumerate(labelled_project.colors):
        assert tuple(palette[c + 1]) == tuple(int(colour[k:k + 2], 16) for k in (1, 3, 5))


def test_brush_strokes_are_autosaved_without_leaving_the_image(widget, labelled_project, qtbot):
    """napari's own brush (layer.paint, the history-recording path) on the labels layer: the
    autosave timer stores exactly the painted pixels as the correction, so a crash or kill
    afterwards loses nothing (saves are atomic: see test_store's SIGKILL tests)."""
    layer = widget.viewer.layers["labels"]
    before = np.array(layer.data)
    value = int(next(v for v in (1, 2, 3, 4) if not (before[10:14, 10:14] == v).any()))
    layer.brush_size = 3
    layer.paint((12, 12), value)
    painted = np.asarray(layer.data) != before
    assert painted.sum() > 0
    widget.timer.setInterval(50)
    qtbot.waitUntil(lambda: Project(labelled_project.root).correction(0) is not None, timeout=10_000)
    labels, set_mask = Project(labelled_project.root).correction(0)
    np.testing.assert_array_equal(set_mask, painted)
    np.testing.assert_array_equal(labels[painted], value)
    layer.undo()  # undo after the autosave: the next save records the image as the model had it
    qtbot.waitUntil(lambda: (Project(labelled_project.root).correction(0)[0][painted] == before[painted]).all(),
                    timeout=10_000)


def test_a_failed_save_is_shown_kept_and_retried(widget, labelled_project, monkeypatch):
    """The disk fills while the store writes the correction's pixels (ENOSPC injected into zarr):
    the dock says so, keeps the edits, the project keeps its last committed state, and the
    autosave's next tick stores them."""
    import zarr
    real = zarr.Group.create_array
    calls = []

    def failing_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(zarr.Group, "create_array", failing_once)
    sp = labelled_project.read("superpixels", 0)
    shown = np.asarray(widget.viewer.layers["labels"].data)[sp == sp[0, 0]]
    widget.choose_class(next(v for v in (1, 2, 3, 4) if not (shown == v).any()))
    widget.fill_superpixels([tuple(np.argwhere(sp == sp[0, 0])[0])])
    edited = np.array(widget.viewer.layers["labels"].data)
    assert not widget.save()
    assert "could not save" in widget.status.text() and "No space left" in widget.status.text()
    assert "free disk space" in widget.status.text()
    assert labelled_project.correction(0) is None  # nothing half-written
    corrections = labelled_project.root / "data.zarr" / "corrections"
    assert not corrections.exists() or not [p for p in corrections.iterdir() if p.is_dir()]
    np.testing.assert_array_equal(np.asarray(widget.viewer.layers["labels"].data), edited)  # kept
    assert widget.save()  # the retry (the autosave's next tick) stores them
    labels, set_mask = Project(labelled_project.root).correction(0)
    np.testing.assert_array_equal(set_mask, sp == sp[0, 0])
    assert widget.unsaved_error is None


def test_a_folder_that_is_not_a_project_is_a_notification(widget, tmp_path):
    shown = widget.current
    assert not widget.open_project(tmp_path)
    assert "neither an spn-napari project nor a data set" in widget.status.text()
    assert widget.current == shown and "labels" in widget.viewer.layers  # still usable


def test_rounds_run_in_a_child_process_and_cancel_cleanly(widget, labelled_project, qtbot):
    """A short round runs to completion (new labels shown, history updated); a second one is
    cancelled mid-training: the child is gone and the project is exactly as before."""
    from spn_napari.project.kinds import round_labels

    from conftest import tree_state
    widget.runs.epochs.value = 1
    widget.runs.device.value = "cpu"
    job = widget.run_step("round")
    losses = []  # connected before the event loop runs again, so no event is missed
    job.progressed.connect(lambda ev: losses.append(ev.data["loss"]) if ev.event == "step" else None)
    with qtbot.waitSignal(job.finished, timeout=300_000) as done:
        pass
    assert done.args[0], done.args[1]
    qtbot.waitUntil(lambda: "round 1 is done" in widget.status.text())  # the lists follow in later turns
    p = Project(labelled_project.root)
    assert [e["round"] for e in p.rounds()] == [0, 1]
    np.testing.assert_array_equal(np.asarray(widget.viewer.layers["labels"].data),
                                  p.read(round_labels(1), widget.current))
    assert widget.rounds.table.rowCount() == 2 and widget.rounds.table.item(1, 0).text() == "*1"
    # the end is announced with the round's mIoU against its parent's, and its row is shown
    m0, m1 = (e["metrics"]["miou"] for e in p.rounds())
    assert f"round 1 is done: mIoU {m1:.3f}, round 0 had {m0:.3f}" in widget.status.text()
    assert widget.sections["rounds"].expanded() and not widget.sections["run"].expanded()
    assert [ix.row() for ix in widget.rounds.table.selectionModel().selectedRows()] == [1]
    assert widget.rounds.miou_plot.xs == [0.0, 1.0]  # the per-round mIoU plot follows the history
    assert widget.rounds.miou_plot.ys == pytest.approx([e["metrics"]["miou"] for e in p.rounds()])
    assert widget.runs.loss_plot.ys == pytest.approx(losses) and losses  # every step's loss, live

    # any earlier round can be shown beside the current one, and rolled back to
    widget.rounds.table.selectRow(0)
    widget.rounds.show_round()
    np.testing.assert_array_equal(np.asarray(widget.viewer.layers["round 0"].data),
                                  p.read(round_labels(0), widget.current))
    widget.rounds.rollback()
    qtbot.waitUntil(lambda: widget.rounds.table.item(0, 0).text() == "*0")
    p.reload()
    assert [e["round"] for e in p.rounds()] == [0, 1] and widget.rounds.table.item(0, 0).text() == "*0"
    np.testing.assert_array_equal(np.asarray(widget.viewer.layers["labels"].data),
                                  p.read(round_labels(0), widget.current))

    before = tree_state(labelled_project.root)
    widget.runs.epochs.value = 50
    job = widget.run_step("round")
    qtbot.waitUntil(lambda: job.last is not None and job.last.event == "step", timeout=300_000)
    # the child's events read in words, with the phase's counts and loss, on one bar for the job
    words = r"training epoch \d+/50 · step \d+/\d+ · loss \d"
    qtbot.waitUntil(lambda: re.match(words, widget.runs.info.text()) is not None, timeout=60_000)
    assert 0 < widget.runs.progress.value() < widget.runs.progress.maximum()
    with qtbot.waitSignal(job.finished, timeout=60_000) as done:
        widget.cancel()
    assert not done.args[0] and "cancelled" in done.args[1]
    assert not job.running()
    assert tree_state(labelled_project.root) == before
    assert widget.runs.progress.value() == 0 and not widget.runs.cancel_btn.isEnabled()


def test_segment_refuses_a_stack_with_a_notification(widget):
    widget.viewer.add_image(np.zeros((3, 20, 20), np.uint8), name="stack")
    assert widget.segmenting.segment("stack") is None
    assert "stack: a 3-D layer" in widget.status.text() and not widget.runs.running()


def test_a_failing_child_is_a_notification_not_a_traceback(widget, labelled_project, qtbot):
    widget.runs.device.choices = (*widget.runs.device.choices, "cuda:7")
    widget.runs.device.value = "cuda:7"  # no such GPU here: the child exits with a one-line error
    job = widget.run_step("round")
    with qtbot.waitSignal(job.finished, timeout=120_000) as done:
        pass
    ok, message = done.args
    assert not ok and "cuda:7" in message and "Traceback" not in message
    assert "cuda:7" in widget.status.text()
    assert "labels" in widget.viewer.layers  # the viewer stays usable


def test_a_child_killed_by_the_system_is_a_notification(widget, labelled_project, qtbot):
    """The kernel's out-of-memory killer ends a child with SIGKILL: the dock says what happened and
    what to try, the project keeps its last completed state and the viewer stays usable."""
    import os
    import signal

    from conftest import tree_state
    widget.runs.epochs.value = 50
    job = widget.run_step("round")
    qtbot.waitUntil(lambda: job.last is not None and job.last.event == "step", timeout=300_000)
    before = tree_state(labelled_project.root)  # round 0 is recorded before training starts
    with qtbot.waitSignal(job.finished, timeout=60_000) as done:
        os.kill(job.proc.processId(), signal.SIGKILL)
    ok, message = done.args
    assert not ok and "out of memory" in message and "--batch-size" in message
    assert "out of memory" in widget.status.text()
    assert tree_state(labelled_project.root) == before
    assert "labels" in widget.viewer.layers and not widget.runs.running()


def test_opening_a_data_set_imports_it_into_a_new_project(widget, demo_dir, tmp_path, qtbot):
    """A data set folder opened in the dock becomes a sibling project (made by `init` in a child
    process) that opens at once: its images, no labels yet, and the next step named."""
    import shutil
    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    assert widget.open_project(data)
    with qtbot.waitSignal(widget.runs.job.finished, timeout=120_000) as done:
        pass
    assert done.args[0], done.args[1]
    project = Project(tmp_path / "data-project")
    assert widget.annotator.project.root == project.root and len(project) == 10
    np.testing.assert_array_equal(widget.viewer.layers["image"].data, project.image(widget.current))
    assert not np.asarray(widget.viewer.layers["labels"].data).any()  # nothing to review yet
    assert "run superpixels next" in widget.status.text()
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before  # the data set is untouched


def test_the_no_background_box_imports_a_project_without_background(widget, demo_dir, tmp_path, qtbot):
    """With "every pixel is a class" ticked, the imported project has no background class: the
    class list the dock offers is the data set's classes alone."""
    import shutil
    data = tmp_path / "photos"
    shutil.copytree(demo_dir, data)
    shutil.rmtree(data / "masks")  # the demo's masks hold background (0), which such a project refuses
    widget.no_background.setChecked(True)
    assert widget.open_project(data)
    with qtbot.waitSignal(widget.runs.job.finished, timeout=120_000) as done:
        pass
    assert done.args[0], done.args[1]
    project = Project(tmp_path / "photos-project")
    assert not project.has_background and widget.annotator.project.root == project.root
    classes = (data / "classes.txt").read_text().split()
    values = [widget.klass.itemData(k) for k in range(widget.klass.count()) if widget.klass.itemData(k) is not None]
    assert sorted(values) == list(range(1, len(classes) + 1))  # every class, no 'background'
    tags = [t + 1 for t in widget.annotator.view(widget.current).tags]
    assert values[:len(tags)] == tags and widget.klass.currentData() == tags[0]


def test_a_data_set_with_bad_files_is_a_notification(widget, demo_dir, tmp_path, qtbot):
    import shutil
    data = tmp_path / "bad"
    shutil.copytree(demo_dir, data)
    with open(data / "labels.csv", "a") as fh:
        fh.write("missing_image.png,flower\n")
    shown = widget.annotator.project.root
    assert widget.open_project(data)
    with qtbot.waitSignal(widget.runs.job.finished, timeout=120_000) as done:
        pass
    ok, message = done.args
    assert not ok and "missing_image" in message and "Traceback" not in message
    assert "missing_image" in widget.status.text()
    assert widget.annotator.project.root == shown and "labels" in widget.viewer.layers  # still usable
    assert not (tmp_path / "bad-project" / "project.db").exists()


def test_a_project_from_a_newer_format_is_a_notification(widget, labelled_project, tmp_path):
    import json
    import shutil
    import sqlite3

    from spn_napari.project.store import DB_NAME
    newer = tmp_path / "newer"
    shutil.copytree(labelled_project.root, newer)
    with sqlite3.connect(newer / DB_NAME) as db:  # the project's state, format version among it
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", ("format_version", json.dumps(99)))
    shown = widget.current
    assert not widget.open_project(newer)
    assert "newer" in widget.status.text() and "upgrade" in widget.status.text()
    assert widget.current == shown and widget.annotator.project.root == labelled_project.root


def test_line_plot_draws_its_points_where_they_belong(qtbot):
    from spn_napari._widgets.line_plot import LINE_COLOR, LinePlot
    plot = LinePlot("mIoU", y_range=(0.0, 1.0))
    qtbot.addWidget(plot)
    plot.resize(240, 120)
    plot.set_points([0, 1, 2], [0.2, float("nan"), 0.8])  # a round without ground truth is left out
    assert plot.xs == [0.0, 2.0] and plot.ys == [0.2, 0.8]
    r = plot.plot_rect()
    first, last = plot.to_widget(0, 0.2), plot.to_widget(2, 0.8)
    assert (first.x(), last.x()) == pytest.approx((r.left(), r.right()))
    assert first.y() == pytest.approx(r.bottom() - 0.2 * r.height())
    assert last.y() == pytest.approx(r.bottom() - 0.8 * r.height())
    image = plot.grab().toImage()
    mid = plot.to_widget(1, 0.5)  # on the segment between the two points
    for q in (first, last, mid):
        c = image.pixelColor(round(q.x()), round(q.y()))
        assert abs(c.red() - LINE_COLOR.red()) + abs(c.green() - LINE_COLOR.green()) \
            + abs(c.blue() - LINE_COLOR.blue()) < 60, (q, c.name())
    corner = image.pixelColor(round(r.left()) + 3, round(r.top()) + 3)  # far from the line
    assert corner.name() != LINE_COLOR.name()


class EventCounter:
    """Counts the events of one type that reach the widgets it watches."""

    def __init__(self, kind: str, *widgets):
        from qtpy.QtCore import QEvent, QObject
        kind = getattr(QEvent.Type, kind)

        class Filter(QObject):
            def eventFilter(self, obj, event):  # noqa: N802
                counter.n += event.type() == kind
                return False

        counter, self.n, self.filter, self.widgets = self, 0, Filter(), widgets
        for w in widgets:
            w.installEventFilter(self.filter)

    def remove(self):
        for w in self.widgets:
            w.removeEventFilter(self.filter)


def test_new_status_and_progress_texts_do_not_relayout_the_window(widget, qtbot):
    """A text that changes while the window is in use (the dock's status, a job's progress) is a
    repaint of its label only: a QLabel in a layout would send a layout request up through the
    dock to napari's main window, each step another frame of the whole window."""
    from qtpy.QtWidgets import QApplication
    widget.viewer.window.show()
    qtbot.waitExposed(main_window(widget.viewer))
    QApplication.sendPostedEvents()  # the window's own layout, after showing it
    requests = EventCounter("LayoutRequest", widget, widget.runs)
    long = "a much longer text than any before it, " * 6
    for label in (widget.status, widget.runs.info):
        label.setText(long)
        assert label.text() == label.toolTip() == long  # the whole of a cut text is the tooltip
    QApplication.sendPostedEvents()  # a layout request is a posted event: delivered now, if any
    QApplication.processEvents()
    requests.remove()
    assert requests.n == 0


def test_progress_is_shown_in_one_deferred_repaint(widget, qtbot):
    """A child's progress reaches the dock as one scheduled repaint: none while the panel updates
    (QProgressBar alone would repaint synchronously, twice, each a whole-window recomposition in
    napari), the numbers and the loss right once the event loop paints."""
    from spn_napari.events import Event

    panel = widget.runs
    widget.sections["run"].set_expanded(True)  # folded, the panel paints nothing
    counter = EventCounter("Paint", panel.progress)
    widget.viewer.window.show()  # make_napari_viewer's window is hidden, and would paint nothing
    qtbot.waitUntil(lambda: counter.n > 0)
    counter.n = 0
    panel._on_event(Event("step", 3, 40, {"loss": 0.25}))
    panel._on_event(Event("step", 7, 40, {"loss": 0.125}))
    panel._redraw_timer.stop()
    panel._redraw()
    assert counter.n == 0 and panel.updatesEnabled()
    assert (panel.progress.value(), panel.progress.maximum()) == (175, 1000)  # 7/40 of the job
    assert panel.info.text().startswith("training step 7/40 · loss 0.125")
    assert panel.loss_plot.xs == [3.0, 7.0] and panel.loss_plot.ys == [0.25, 0.125]
    qtbot.waitUntil(lambda: counter.n > 0)  # painted by the event loop, after the updates
    counter.remove()
