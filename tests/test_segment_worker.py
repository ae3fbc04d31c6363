"""Segment with the model kept loaded (issue 20): the `serve` child answers request after request
with exactly what Segmenter gives in this process, follows the project's current round (a rollback
included), comes back after being killed with a one-line notice, and stops with the dock."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spn_napari.data.images import as_rgb, load_mask
from spn_napari.predict.segmenter import Segmenter
from spn_napari.predict.server import serve
from spn_napari.project.history import rollback
from spn_napari.project.store import Project

from conftest import open_dock


@pytest.fixture
def served(_round_project, tmp_path) -> Project:
    """A copy of the labelled (SP-CAM) project after one 1-epoch round (conftest's)."""
    shutil.copytree(_round_project, tmp_path / "project")
    return Project(tmp_path / "project")


def _photo(p: Project, tmp_path: Path, name: str = "photo.png") -> tuple[Path, np.ndarray]:
    image = p.image(5)[:50, :60]  # (50, 60, 3): another size than the project's images
    Image.fromarray(image).save(tmp_path / name)
    return tmp_path / name, image


def test_serve_answers_each_request_as_segmenter_does_and_follows_a_rollback(served, tmp_path):
    photo, image = _photo(served, tmp_path)
    tag = served.classes[served.images[5].tags[0]]
    lines = [{"id": 1, "image": str(photo), "out": str(tmp_path / "a.png"), "tags": None},
             {"id": 2, "image": str(photo), "out": str(tmp_path / "b.png"), "tags": [tag]},
             {"id": 3, "image": str(tmp_path / "missing.png"), "out": str(tmp_path / "c.png")},
             {"id": 4, "image": str(photo), "out": str(tmp_path / "d.png"), "tags": [tag]}]
    out = io.StringIO()

    def requests():
        for k, req in enumerate(lines):
            if k == 3:  # between requests, from another process: round 0 made current again
                rollback(Project(served.root), 0)
            yield json.dumps(req) + "\n"

    assert serve(served.root, "cpu", requests(), out) == 0
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert answers[0] == {"event": "ready"}
    a, b, c, d = answers[1:]
    r1 = Segmenter.from_project(served.root, round_no=1, device="cpu")
    r0 = Segmenter.from_project(served.root, round_no=0, device="cpu")
    assert (a["event"], a["round"], a["loaded"]) == ("done", 1, True)
    np.testing.assert_array_equal(load_mask(tmp_path / "a.png"), r1.predict(as_rgb(image)))
    assert (b["round"], b["loaded"]) == (1, False)  # the model stayed loaded
    np.testing.assert_array_equal(load_mask(tmp_path / "b.png"), r1.predict(image, [tag]))
    assert c["event"] == "error" and c["id"] == 3 and "missing.png" in c["message"] and "\n" not in c["message"]
    assert (d["round"], d["loaded"]) == (0, True)  # the rollback: the current round's model (the SPN)
    np.testing.assert_array_equal(load_mask(tmp_path / "d.png"), r0.predict(image, [tag]))


pytest.importorskip("napari")  # the dock's tests below (without napari this whole module skips)


@pytest.fixture
def widget(make_napari_viewer, served):
    w = open_dock(make_napari_viewer(), served.root)
    w.runs.device.value = "cpu"
    yield w
    w.timer.stop()
    w.segmenting.stop()


def _segment(widget, qtbot, name: str) -> dict:
    panel = widget.segmenting
    rid = panel.segment(name)
    assert rid is not None
    with qtbot.waitSignal(panel.worker.answered, timeout=120_000,
                          check_params_cb=lambda answer: answer.get("id") == rid) as got:
        pass
    return got.args[0]


def test_segment_labels_a_layer_twice_with_one_child(widget, served, qtbot):
    """A gray layer of another size, not from the project: a Labels layer over it equal to the
    Segmenter's prediction in this process, with the project's names and colours; the second
    Segment (with tags) is answered by the same child, the model still loaded."""
    gray = np.asarray(served.image(5)[:50, :60].mean(2), np.uint8)  # (50, 60)
    widget.viewer.add_image(gray, name="photo", scale=(2.0, 2.0), translate=(5.0, -3.0))
    panel = widget.segmenting
    assert panel.image_layers() == ["image", "photo"]
    from napari.utils.notifications import notification_manager
    popups = len(notification_manager.records)
    first = _segment(widget, qtbot, "photo")
    pid = panel.worker.pid()
    assert first["event"] == "done" and first["loaded"] and first["round"] == 1
    out = widget.viewer.layers["photo segmentation"]
    ref = Segmenter.from_project(served.root, device="cpu")
    np.testing.assert_array_equal(np.asarray(out.data), ref.predict(as_rgb(gray)))
    assert tuple(out.scale) == (2.0, 2.0) and tuple(out.translate) == (5.0, -3.0)
    assert list(out.features["class"]) == ["background", *served.classes]
    assert not Path(first["out"]).parent.exists()  # the temporary folder is gone
    # started and done are told on the status line; napari's pop-up is kept for problems
    assert widget.status.text().startswith("photo segmentation: labelled")
    assert len(notification_manager.records) == popups
    tag = served.classes[served.images[5].tags[0]]
    panel.tags.value = f" {tag} ;"
    second = _segment(widget, qtbot, "photo")
    assert second["event"] == "done" and not second["loaded"] and panel.worker.pid() == pid
    np.testing.assert_array_equal(np.asarray(widget.viewer.layers["photo segmentation"].data),
                                  ref.predict(as_rgb(gray), [tag]))
    assert widget.current == 0 and "labels" in widget.viewer.layers  # the project was not reloaded


def test_the_click_adds_the_layer_empty_and_an_error_takes_it_away(widget, served, qtbot):
    """Segment's click adds "<layer> segmentation", empty, unselected and placed over its image;
    the answer fills it. An answer that is an error (a tag the project lacks) removes the empty
    layer it was for, and leaves a filled one as it was."""
    gray = np.asarray(served.image(5)[:50, :60].mean(2), np.uint8)  # (50, 60)
    widget.viewer.add_image(gray, name="photo", scale=(2.0, 2.0))
    panel, selected = widget.segmenting, widget.viewer.layers.selection.active
    panel.tags.value = "no such class"
    rid = panel.segment("photo")
    empty = widget.viewer.layers["photo segmentation"]
    assert np.shape(empty.data) == (50, 60) and not np.asarray(empty.data).any()
    assert tuple(empty.scale) == (2.0, 2.0) and widget.viewer.layers.selection.active is selected
    with qtbot.waitSignal(panel.worker.answered, timeout=120_000, check_params_cb=lambda a: a.get("id") == rid):
        pass
    assert "photo segmentation" not in widget.viewer.layers
    panel.tags.value = ""
    assert _segment(widget, qtbot, "photo")["event"] == "done"
    filled = np.asarray(widget.viewer.layers["photo segmentation"].data).copy()
    np.testing.assert_array_equal(filled, Segmenter.from_project(served.root, device="cpu").predict(as_rgb(gray)))
    panel.tags.value = "no such class"
    assert _segment(widget, qtbot, "photo")["event"] == "error"
    np.testing.assert_array_equal(np.asarray(widget.viewer.layers["photo segmentation"].data), filled)


def test_a_killed_child_is_replaced_with_a_notice_and_a_rollback_is_followed(widget, served, qtbot):
    widget.viewer.add_image(served.image(3), name="photo", rgb=True)
    assert _segment(widget, qtbot, "photo")["round"] == 1
    worker = widget.segmenting.worker
    old = worker.pid()
    os.kill(old, signal.SIGKILL)  # from outside: the kernel's OOM killer, a user's kill
    qtbot.waitUntil(lambda: not worker.running(), timeout=10_000)
    rollback(Project(served.root), 0)  # while the dead child held round 1
    notices = []
    worker.notice.connect(notices.append)
    answer = _segment(widget, qtbot, "photo")
    assert answer["event"] == "done" and answer["round"] == 0 and worker.pid() != old
    assert len(notices) == 1 and "had stopped" in notices[0] and "\n" not in notices[0]
    np.testing.assert_array_equal(np.asarray(widget.viewer.layers["photo segmentation"].data),
                                  Segmenter.from_project(served.root, device="cpu").predict(served.image(3)))


def test_the_child_stops_with_the_dock(widget, served, qtbot):
    widget.viewer.add_image(served.image(3), name="photo", rgb=True)
    _segment(widget, qtbot, "photo")
    worker = widget.segmenting.worker
    pid = worker.pid()
    widget.close()
    assert widget.segmenting.worker is None and not worker.running()
    with pytest.raises(ProcessLookupError):
        for _ in range(50):  # reaped by QProcess: gone from the process table
            os.kill(pid, 0)
            qtbot.wait(100)


def test_the_round_choice_asks_that_rounds_model(widget, served, qtbot):
    """The form's round: 'current' follows the project; 'round 0 (SPN)' asks for the SPN even
    while round 1 is current; the choices follow a new round's history."""
    widget.viewer.add_image(served.image(3), name="photo", rgb=True)
    panel = widget.segmenting
    assert [name for name, _ in panel._round_choices()] == ["current", "round 0 (SPN)", "round 1"]
    panel.round.value = 0
    answer = _segment(widget, qtbot, "photo")
    assert answer["round"] == 0
    np.testing.assert_array_equal(np.asarray(widget.viewer.layers["photo segmentation"].data),
                                  Segmenter.from_project(served.root, round_no=0, device="cpu").predict(served.image(3)))
    panel.round.value = None
    assert _segment(widget, qtbot, "photo")["round"] == 1
