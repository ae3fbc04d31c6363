"""Closing napari with the dock open, as a person does: right after an edit, and while the dock's
children run (a Segment server that answered, a refinement round). Each runs a real viewer in a
fresh Python process (the tests run under Xvfb), so the process's own exit is what is checked:
exit code 0, the edit saved, no child left behind, no "QProcess: Destroyed while process is still
running" abort."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import click_row

pytest.importorskip("napari")

SCRIPT = r'''
import json, sys, time
import numpy as np
import napari
from qtpy.QtWidgets import QApplication
from spn_napari._widgets.annotator_widget import AnnotatorWidget

root, mode = sys.argv[1], sys.argv[2]
viewer = napari.Viewer()
w = AnnotatorWidget(viewer)
w.propagate.setChecked(False)
viewer.window.add_dock_widget(w)
assert w.open_project(root, image=0)
app = QApplication.instance()

def wait(cond, seconds=240):
    end = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > end:
            raise SystemExit(f"timed out in {mode}")
        app.processEvents()
        time.sleep(0.01)

pids = []
if mode == "children":
    w.segmenting.segment("image")
    wait(lambda: "image segmentation" in viewer.layers)
    pids.append(w.segmenting.worker.pid())
    w.run_step("round")
    wait(lambda: w.runs.running() and w.runs.job.proc.processId() > 0)
    pids.append(int(w.runs.job.proc.processId()))
layer = w.labels_layer
value = 1 + (int(layer.data[0, 0]) % 2)  # a class other than the pixel's own
layer.data_setitem((np.array([0, 0, 1]), np.array([0, 1, 0])), value)  # a stroke, then at once:
viewer.close()
print(json.dumps({"value": value, "pids": pids}), flush=True)
'''


def _close_session(root, mode: str) -> dict:
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(root), mode], capture_output=True, text=True,
                       timeout=600, env={**os.environ, "SPN_NAPARI_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "Destroyed while process" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _saved_pixels(project, i: int = 0) -> np.ndarray:
    labels, set_mask = project.correction(i)
    return labels[[0, 0, 1], [0, 1, 0]], set_mask[[0, 0, 1], [0, 1, 0]]


def test_closing_napari_right_after_an_edit_saves_it(labelled_project):
    got = _close_session(labelled_project.root, "edit")
    labels, set_mask = _saved_pixels(labelled_project)
    assert set_mask.all() and (labels == got["value"]).all()


def test_closing_after_a_segment_and_during_a_round_stops_both_children(labelled_project):
    before = labelled_project.current_round()
    got = _close_session(labelled_project.root, "children")
    assert len(got["pids"]) == 2 and all(got["pids"])
    for pid in got["pids"]:  # no child left: each was stopped and waited for
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    labels, set_mask = _saved_pixels(labelled_project)
    assert set_mask.all() and (labels == got["value"]).all()
    assert labelled_project.current_round() == before  # the cancelled round left no round behind


# ---- keys go to the dock wherever the focus is; the list's selection is the shown photo ----------
def _shown_row(widget) -> int:
    return widget.table.currentIndex().row()


def test_keys_after_clicking_a_list_row_are_the_docks(widget, labelled_project, qtbot):
    from qtpy.QtCore import Qt
    p = labelled_project
    click_row(widget, qtbot, 3)
    i = widget.image_list.image_at(3)
    assert widget.current == i
    tags = p.images[i].tags
    if len(tags) > 1:
        qtbot.keyClick(widget.table, "2")  # the photo's second tag, not napari's or the list's
        assert widget.klass.currentData() == tags[1] + 1 == widget.labels_layer.selected_label
    qtbot.keyClick(widget.table, "b")  # no type-ahead: the selection and the photo stay
    assert widget.current == i and _shown_row(widget) == 3
    qtbot.keyClick(widget.table, "n")  # next unreviewed, with the list focused
    assert widget.current == p_next(p, i) and widget.image_list.image_at(_shown_row(widget)) == widget.current
    qtbot.keyClick(widget.table, Qt.Key.Key_Down)  # the arrow key shows the row it moves to
    row = _shown_row(widget)
    assert widget.current == widget.image_list.image_at(row)
    np.testing.assert_array_equal(np.asarray(widget.labels_layer.data), widget.annotator.view(widget.current).labels)
    widget.klass.setFocus()
    qtbot.keyClick(widget.klass, "a")  # Accept, from the class box: the shown photo is reviewed
    assert p.review(widget.image_list.image_at(row)) == "reviewed"
    assert widget.image_list.image_at(_shown_row(widget)) == widget.current


def p_next(project, i: int) -> int:
    """The next unreviewed photo after i (none is reviewed in a fresh project)."""
    return (i + 1) % len(project)


def test_a_segmentation_layer_leaves_the_keys_to_the_dock(widget, labelled_project, qtbot):
    from spn_napari._widgets.napari_adapter import canvas_widget
    labels = widget.labels_layer
    image = widget.viewer.layers["image"]
    widget.segmenting._show("image", np.zeros(np.shape(labels.data), np.uint8), image)
    seg = widget.viewer.layers["image segmentation"]
    assert widget.viewer.layers.selection.active is labels  # the new layer is not selected
    tags = labelled_project.images[widget.current].tags
    qtbot.keyClick(canvas_widget(widget.viewer), "1")
    assert widget.klass.currentData() == tags[0] + 1 and labels.mode == "paint"
    widget.viewer.layers.selection.active = seg  # even selected by the person, 1–9 choose the class
    mode = seg.mode
    qtbot.keyClick(canvas_widget(widget.viewer), "1")
    assert seg.mode == mode and widget.klass.currentData() == tags[0] + 1


# ---- a run disables what conflicts with it ---------------------------------------------------------
def test_a_run_disables_rollback_other_steps_and_opening(widget, labelled_project, qtbot, tmp_path):
    widget.runs.device.value = "cpu"
    widget.runs.epochs.value = 50
    job = widget.run_step("round")
    qtbot.waitUntil(job.running, timeout=60_000)
    assert not widget.rounds.rollback_btn.isEnabled() and not widget.open_btn.isEnabled()
    assert not any(b.isEnabled() for b in widget.runs.step_buttons) and widget.runs.cancel_btn.isEnabled()
    assert widget.rounds.show_btn.isEnabled() and widget.segmenting.button.isEnabled()
    widget.rounds.table.selectRow(0)
    widget.rounds.rollback()  # a key or a script gets the same answer as the disabled button
    assert "run is going on" in widget.status.text()
    assert not widget.open_project(labelled_project.root)
    with qtbot.waitSignal(job.finished, timeout=60_000):
        widget.cancel()
    assert widget.rounds.rollback_btn.isEnabled() and widget.open_btn.isEnabled()
    assert all(b.isEnabled() for b in widget.runs.step_buttons)


# ---- colours and warnings ------------------------------------------------------------------------
def test_evidence_and_the_suggestion_outline_have_no_hue_to_share_with_a_class(widget, qtbot):
    """The evidence dims the photo (black, transparent at its peak) and the outline is white and
    black: neither has a hue, so no class colour (the palette has yellow, orange, red, cyan) can be
    read as evidence, colour-blind or not."""
    sp_cam = widget.viewer.layers["SP-CAM"]
    rgb = np.asarray(sp_cam.colormap.colors)[:, :3]
    assert np.allclose(rgb, rgb[:, :1]) and rgb.max() == 0
    alpha = np.asarray(sp_cam.colormap.colors)[:, 3]
    assert alpha[0] > 0.5 and alpha[-1] == 0 and (np.diff(alpha) <= 0).all()  # darkest where no evidence
    widget.suggestions.button.click()
    outline = widget.viewer.layers["Suggestion"]
    rgb = np.asarray(outline.colormap.colors)[:, :3]
    assert np.allclose(rgb, rgb[:, :1])
    s = widget.suggestions.queue.current
    sp = widget.annotator.view(s.image).superpixels == s.superpixel
    data = np.asarray(outline.data)
    assert set(np.unique(data)) == {0, 1, 2} and sp[data > 0].all()
    assert (data[sp] == 2).sum() and not (data == 2)[1:-1, 1:-1][sp[1:-1, 1:-1] & sp[:-2, 1:-1] & sp[2:, 1:-1]
                                                                 & sp[1:-1, :-2] & sp[1:-1, 2:]].any()


def test_the_unsure_layer_is_hatched_without_hue_exactly_where_round_1_is_unsure(widget):
    from spn_napari.napari_io import unsure_stripes
    layer = widget.viewer.layers["Unsure"]
    mask = widget.annotator.view(widget.current).unsure.astype(bool)
    data = np.asarray(layer.data)
    np.testing.assert_array_equal(data, unsure_stripes(mask))
    assert ((data > 0) == mask).all() and set(np.unique(data[mask])) <= {1, 2}
    rgb = np.asarray(layer.colormap.colors)[:, :3]
    assert np.allclose(rgb, rgb[:, :1])


def test_the_status_line_counts_the_pixels_a_person_set(widget, qtbot):
    assert "nothing corrected yet" in widget.status.text()
    layer = widget.labels_layer
    value = 1 + (int(layer.data[0, 0]) % 2)
    layer.data_setitem((np.array([0, 0, 0]), np.array([0, 1, 2])), value)
    assert widget.save()
    assert "3 pixels set by you" in widget.status.text()


def test_no_deprecation_warning_from_the_dock_at_import_open_or_switch(make_napari_viewer, labelled_project):
    import warnings

    from spn_napari._widgets.annotator_widget import AnnotatorWidget
    r = subprocess.run([sys.executable, "-W", "always", "-c", "import spn_napari._widgets.annotator_widget"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and not [line for line in r.stderr.splitlines()
                                      if "Warning" in line and "spn_napari" in line], r.stderr
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w = AnnotatorWidget(make_napari_viewer())
        w.propagate.setChecked(False)
        w.viewer.window.add_dock_widget(w)
        assert w.open_project(labelled_project.root)
        for i in (1, 2, 0):
            w.show_image(i)
        w.timer.stop()
    ours = [f"{c.filename}:{c.lineno} {c.message}" for c in caught
            if issubclass(c.category, (DeprecationWarning, FutureWarning, PendingDeprecationWarning))
            and ("spn_napari" in c.filename or "/napari/" in c.filename)]
    assert not ours, ours


def test_swap_starts_at_the_photos_two_largest_tags_and_the_tags_get_the_lists_width(widget, labelled_project):
    from spn_napari._widgets.image_list import CONFIDENCE, STATUS, TAGS
    names = labelled_project.label_names()
    name = lambda tag: names[tag + (1 if labelled_project.has_background else 0)]  # noqa: E731
    for i in range(len(labelled_project)):
        widget.show_image(i)
        tags = widget.annotator.view(i).tags  # by labelled area
        if tags:
            second = tags[1] if len(tags) > 1 else tags[0]
            assert (widget.swap_from.currentText(), widget.swap_to.currentText()) == (name(tags[0]), name(second))
    header = widget.table.horizontalHeader()
    fm = widget.table.fontMetrics()
    assert header.sectionSize(STATUS) >= fm.horizontalAdvance("unreviewed")
    assert header.sectionSize(CONFIDENCE) >= fm.horizontalAdvance("confidence")
    assert header.sectionSize(0) >= fm.horizontalAdvance(max((im.name for im in labelled_project.images), key=len))
    assert header.sectionSize(TAGS) >= max(header.sectionSize(c) for c in (0, STATUS, CONFIDENCE))


def test_one_section_opens_at_a_time_and_the_window_keeps_its_height(widget, qtbot):
    from qtpy.QtWidgets import QApplication

    from spn_napari._widgets.napari_adapter import main_window
    window = main_window(widget.viewer)
    widget.viewer.window.show()
    window.resize(1600, 1000)
    for name in ("run", "segment", "rounds", "run"):
        widget.sections[name].set_expanded(True)
        QApplication.processEvents()
        assert [n for n, s in widget.sections.items() if s.expanded()] == [name]
        assert window.height() <= 1000 and widget.minimumSizeHint().height() < 900
