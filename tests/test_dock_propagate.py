"""The dock's Propagate: each saved answer relabels every photo in a child process, the shown photo
and the suggestion queue follow, Backspace takes an answer and its propagation back, the switch
turns it off. Driven headlessly on the real napari viewer."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from spn_napari.events import run
from spn_napari.labels import current_labels
from spn_napari.live.head import propagate
from spn_napari.project import kinds
from spn_napari.project.live_labels import read_live
from spn_napari.project.store import Project
from spn_napari.review.suggest import LIVE_QUEUE, by_photo, ranked_rows

from conftest import open_dock

pytest.importorskip("napari")
from qtpy.QtCore import Qt  # noqa: E402

from spn_napari._widgets.napari_adapter import canvas_widget  # noqa: E402

WAIT_MS = 240_000  # the first answer waits for the child: torch, the descriptors, the table


def test_an_answer_relabels_the_photos_and_backspace_takes_it_back(make_napari_viewer, labelled_project, qtbot,
                                                                   tmp_path):
    root = labelled_project.root
    w = open_dock(make_napari_viewer(), root, propagate=True)
    panel = w.suggestions
    canvas = canvas_widget(w.viewer)
    panel.button.click()
    first = panel.queue.current
    with qtbot.waitSignal(w.live.relabelled, timeout=WAIT_MS) as blocker:
        qtbot.keyClick(canvas, "y")  # accept the proposal
    ev = blocker.args[0]
    assert ev["event"] == "done", ev
    store = Project(root)
    sp = store.read(kinds.SUPERPIXELS, first.image)
    labels, set_mask = store.correction(first.image)
    assert (labels[sp == first.superpixel] == first.proposed).all() and set_mask[sp == first.superpixel].all()
    # the shown photo is the store's labels now, and the queue the head's ranking
    np.testing.assert_array_equal(np.asarray(w.labels_layer.data), current_labels(store, w.current))
    assert f"changed {ev['changed']} superpixels in {ev['photos']} photos" in panel.counter.text()
    shown = (panel.queue.current.image, panel.queue.current.superpixel)
    taken = [(first.image, first.superpixel), shown]  # answered, and shown now: the pass goes on from them
    rest = [(int(r[0]), int(r[1])) for r in by_photo(ranked_rows(store, LIVE_QUEUE + len(taken)), taken)]
    queued = [(int(r[0]), int(r[1])) for r in panel.queue._rows[panel.queue._at + 1:]]
    assert queued == rest
    # Backspace: the answer is taken back, suggested again, and the head refits without it
    with qtbot.waitSignal(w.live.relabelled, timeout=WAIT_MS):
        qtbot.keyClick(canvas, Qt.Key.Key_Backspace)
    assert (panel.queue.current.image, panel.queue.current.superpixel) == (first.image, first.superpixel)
    assert panel.counter.text().startswith("answers 0 · clicks 0 · looks 0")
    store = Project(root)
    corr = store.correction(first.image)
    assert corr is None or not corr[1][sp == first.superpixel].any()
    np.testing.assert_array_equal(np.asarray(w.labels_layer.data), current_labels(store, w.current))
    twin = tmp_path / "twin"  # the same saved state, propagated from scratch: the same labels
    # copied by another process: closing a copy of project.db here would drop this process's
    # SQLite locks on it (POSIX locks are per process), and the dock's connections with them
    subprocess.run(["cp", "-r", str(root), str(twin)], check=True)
    run(propagate(Project(twin)))
    np.testing.assert_array_equal(read_live(store).labels, read_live(Project(twin)).labels)
    # switched off: an answer changes what it sets and nothing else
    w.propagate.setChecked(False)
    assert not w.live.running()
    version = store.artifact(kinds.live_labels(0))["version"]
    qtbot.keyClick(canvas, "y")
    qtbot.waitUntil(lambda: w.annotator.unwritten == 0)
    qtbot.wait(500)
    assert Project(root).artifact(kinds.live_labels(0))["version"] == version and not w.live.running()
    w.timer.stop()
