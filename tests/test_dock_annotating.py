"""The dock as an annotator uses it (issue 20), driven headlessly on the real napari viewer:
the class box follows the photo's tags, keys 1–9 choose them, the paint label and the class box
follow each other, labels as outlines or filled, the Unsure layer (the engine's ignore band),
an image list of at least 12 rows at 1600×1000 with tag tooltips, a sort that starts at the top
and a key that brings the shown image's row back, and a status line that tells the run in progress."""

from __future__ import annotations

import numpy as np
import pytest

from spn_napari.project.store import Project

pytest.importorskip("napari")
from spn_napari._widgets.annotator_widget import AnnotatorWidget  # noqa: E402
from spn_napari._widgets.napari_adapter import canvas_widget, main_window  # noqa: E402


def _box(widget) -> list:
    """The class box's label values, in its order (separators left out)."""
    k = widget.klass
    return [k.itemData(i) for i in range(k.count()) if k.itemData(i) is not None]


def _by_area(labels: np.ndarray, tags) -> list[int]:
    """Reference: the tags' label values by labelled area, largest first (a plain loop)."""
    area = {t + 1: int((labels == t + 1).sum()) for t in tags}
    return sorted(area, key=lambda v: -area[v])  # stable: ties keep the tags' order


def test_the_class_box_follows_each_photo(widget, labelled_project):
    """On every image: its tags first, by labelled area, then every other label; the largest tag
    chosen; SP-CAM and CAM show that class; the paint label is it."""
    p = labelled_project
    multi = 0
    for i in range(len(p)):
        widget.show_image(i)
        labels = np.asarray(widget.labels_layer.data)
        tags = _by_area(labels, p.images[i].tags)
        multi += len(tags) > 1
        assert _box(widget)[:len(tags)] == tags
        assert sorted(_box(widget)) == list(range(0, len(p.classes) + 1))  # background too: it has one
        assert widget.klass.currentData() == tags[0] == widget.labels_layer.selected_label
        view = widget.annotator.view(i)
        for method in ("sp-cam", "cam"):
            np.testing.assert_array_equal(np.asarray(widget.viewer.layers[method.upper()].data),
                                          view.evidence[method][tags[0] - 1])
    assert multi, "the demo has photos with two tags or more"


def test_number_keys_choose_the_photos_tags_and_the_paint_label_follows_the_box(widget, labelled_project, qtbot):
    p = labelled_project
    i = next(i for i in range(len(p)) if len(p.images[i].tags) >= 2)
    widget.show_image(i)
    tags = _by_area(np.asarray(widget.labels_layer.data), p.images[i].tags)
    canvas = canvas_widget(widget.viewer)
    assert widget.viewer.layers.selection.active is widget.labels_layer
    qtbot.keyClick(canvas, "2")  # the second tag, on the canvas with the labels layer selected
    assert widget.klass.currentData() == tags[1] == widget.labels_layer.selected_label
    np.testing.assert_array_equal(np.asarray(widget.viewer.layers["SP-CAM"].data),
                                  widget.annotator.view(i).evidence["sp-cam"][tags[1] - 1])
    qtbot.keyClick(canvas, "1")
    assert widget.klass.currentData() == tags[0]
    qtbot.keyClick(canvas, "9")  # no ninth tag: nothing changes
    assert widget.klass.currentData() == tags[0]
    other = next(v for v in range(1, len(p.classes) + 1) if v not in tags)
    widget.labels_layer.selected_label = other  # napari's label spinner or picker
    assert widget.klass.currentData() == other


def test_a_photo_without_tags_chooses_nothing(make_napari_viewer, tmp_path):
    from PIL import Image

    from spn_napari.data.readers import read_dataset
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "classes.txt").write_text("cat\ndog\n")
    for k in range(2):
        Image.fromarray(np.full((30, 40, 3), 90 * k, np.uint8)).save(data / "images" / f"im{k}.png")
    (data / "labels.csv").write_text("image,labels\nim0.png,dog\nim1.png,\n")
    project = Project.create(tmp_path / "project", read_dataset(data))
    w = AnnotatorWidget(make_napari_viewer())
    w.propagate.setChecked(False)  # the live head has tests of its own
    assert w.open_project(project.root, image=1)
    assert project.images[1].tags == () or not project.images[1].tags
    assert sorted(_box(w)) == [0, 1, 2] and w.klass.currentIndex() == -1 and w.klass.currentData() is None
    assert "no tags: pick a class" in w.status.text()
    w.show_image(0)
    assert _box(w)[0] == 2 and w.klass.currentData() == 2  # dog
    w.timer.stop()


def test_o_draws_the_labels_as_outlines_and_back(widget, qtbot):
    canvas = canvas_widget(widget.viewer)
    layer = widget.labels_layer
    assert layer.contour == 0
    qtbot.keyClick(canvas, "o")
    assert widget.outlines.isChecked() and layer.contour > 0 and layer.opacity == 1.0
    widget.show_image(1)  # the setting stays with the next image
    assert widget.labels_layer.contour > 0
    qtbot.keyClick(canvas, "o")
    assert layer.contour == 0 and layer.opacity < 1.0


def test_the_unsure_layer_is_what_round_1_leaves_out(widget, labelled_project, qtbot):
    """The Unsure layer marks exactly the pixels round 1's target ignores (the engine's ignore band
    around the same evidence), for every image; U shows and hides it."""
    from spn_napari.labels import training_target
    from spn_napari.metrics import IGNORE
    from spn_napari.project.kinds import round_labels
    from spn_napari.rounds.refine import ensure_round0
    p = Project(labelled_project.root)
    ensure_round0(p, "auto")  # round 0: the pseudo-labels the dock shows
    layer = widget.viewer.layers["Unsure"]
    assert not layer.visible
    qtbot.keyClick(canvas_widget(widget.viewer), "u")
    assert layer.visible and widget.unsure.isChecked()
    marked = 0
    for i in range(len(p)):
        widget.show_image(i)
        target = training_target(p, i, round_labels(0), ignore_band=0.2)
        np.testing.assert_array_equal(np.asarray(layer.data).astype(bool), target == IGNORE, err_msg=f"image {i}")
        marked += int((target == IGNORE).sum())
    assert marked > 0 and layer.visible  # stays shown from image to image
    layer.visible = False  # from napari's layer list: the box follows
    assert not widget.unsure.isChecked()


def test_the_list_shows_twelve_rows_tags_in_tooltips_and_sorting_starts_at_the_top(
        make_napari_viewer, tmp_path, qtbot):
    from PIL import Image
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    from spn_napari.data.readers import read_dataset
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "classes.txt").write_text("building\ngrass\ntree\ncow\nsky\n")
    rows = ["image,labels"]
    for k in range(60):
        Image.fromarray(np.full((24, 32, 3), k * 4, np.uint8)).save(data / "images" / f"im{k:02d}.png")
        rows.append(f"im{k:02d}.png,building;grass;tree;cow;sky")
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    project = Project.create(tmp_path / "project", read_dataset(data))
    viewer = make_napari_viewer(show=True)
    w = AnnotatorWidget(viewer)
    w.propagate.setChecked(False)  # the live head has tests of its own
    viewer.window.add_dock_widget(w)
    main_window(viewer).resize(1600, 1000)
    assert w.open_project(project.root, image=40)
    QApplication.processEvents()
    t = w.table
    assert t.viewport().height() // t.rowHeight(0) >= 12
    model = w.image_list
    assert model.data(model.index(0, 2), Qt.ItemDataRole.ToolTipRole) == "building, grass, tree, cow, sky"
    t.scrollTo(model.index(model.row_of(40), 0))
    assert t.verticalScrollBar().value() > 0
    t.sortByColumn(0, Qt.SortOrder.DescendingOrder)
    assert t.verticalScrollBar().value() == 0  # the top of the new order
    assert t.currentIndex().row() == model.row_of(40) == 19  # still the shown image's row
    qtbot.keyClick(canvas_widget(viewer), "g")  # bring it into view
    assert t.viewport().rect().contains(t.visualRect(model.index(model.row_of(40), 0)).center())
    w.timer.stop()


def test_the_status_line_tells_the_run_in_progress(widget, labelled_project, qtbot):
    """A cancelled run's 'cancelled' does not linger: the next run's start replaces it, and the
    folded Run section opens to show the progress."""
    assert not widget.sections["run"].expanded()
    job = widget.run_step("round")
    assert widget.sections["run"].expanded() and "round: running" in widget.status.text()
    with qtbot.waitSignal(job.finished, timeout=60_000):
        widget.cancel()
    assert "cancelled" in widget.status.text()
    job = widget.run_step("round")
    assert "round: running" in widget.status.text() and "cancelled" not in widget.status.text()
    with qtbot.waitSignal(job.finished, timeout=60_000):
        widget.cancel()


def test_the_run_form_sets_each_steps_options(widget):
    """The magicgui run form: 'default' values add no option; others reach the step's command line."""
    from spn_napari.jobs import command
    runs = widget.runs
    assert [runs.step_options(s) for s in ("superpixels", "train-spn", "pseudo-labels", "round")] == \
        [[], [], ["--method", "auto"], []]
    runs.epochs.value, runs.n_segments.value, runs.method.value = 3, 200, "cam"
    assert runs.step_options("round") == runs.step_options("train-spn") == ["--epochs", "3"]
    assert runs.step_options("superpixels") == ["--n-segments", "200"]
    argv = command("pseudo-labels", "P", device="cpu", extra=runs.step_options("pseudo-labels"))
    assert argv[3:] == ["pseudo-labels", "P", "--progress", "jsonl", "--device", "cpu", "--method", "cam"]


def test_checking_suggestions_with_keys_saves_each_answer(widget, labelled_project, qtbot, monkeypatch):
    """Check suggestions: the dock shows the engine's queue in order (image, outlined superpixel,
    proposed class chosen); Y, C, a tag's number and S answer as a person would, each answer shown
    at once and saved as a partial correction while the person looks at the next one (stopping
    writes what is left); the counter counts answers, clicks and looks."""
    from spn_napari.review.suggest import SuggestionQueue
    p = Project(labelled_project.root)
    ahead = SuggestionQueue(p)  # the order the dock shows: a photo's suggestions together
    queue = [ahead.next() for _ in range(4)]
    canvas = canvas_widget(widget.viewer)
    panel = widget.suggestions
    panel.button.click()
    assert panel.active
    sp_of = lambda i: p.read("superpixels", i)  # noqa: E731
    first = queue[0]
    assert widget.current == first.image and widget.klass.currentData() == first.proposed
    outline = np.asarray(widget.viewer.layers["Suggestion"].data).astype(bool)
    assert outline.any() and (sp_of(first.image)[outline] == first.superpixel).all()
    photos_read = []
    store = widget.annotator.project
    read_photo = store.image
    qtbot.wait(300)  # the person looks; the dock reads the next suggestion's photo ahead meanwhile
    monkeypatch.setattr(store, "image", lambda i: photos_read.append(i) or read_photo(i))
    written = lambda: qtbot.waitUntil(lambda: widget.annotator.unwritten == 0)  # noqa: E731 the person looks
    qtbot.keyClick(canvas, "y")  # accept the proposal
    assert photos_read == []  # the next photo was read ahead: the answer reads no photo
    written()
    labels, set_mask = Project(p.root).correction(first.image)
    np.testing.assert_array_equal(set_mask, sp_of(first.image) == first.superpixel)
    assert (labels[set_mask] == first.proposed).all()
    assert (widget.annotator.view(first.image).labels[set_mask] == first.proposed).all()  # what the dock shows
    second = queue[1]
    assert widget.current == second.image and widget.klass.currentData() == second.proposed
    if second.proposed > 0:  # the evidence shown is the proposal's, set with the photo
        np.testing.assert_array_equal(widget.viewer.layers["SP-CAM"].data,
                                      widget.annotator.view(second.image).evidence["sp-cam"][second.proposed - 1])
    qtbot.keyClick(canvas, "c")  # correct as labelled: a look
    written()
    labels, set_mask = Project(p.root).correction(second.image)
    assert (labels[sp_of(second.image) == second.superpixel] == second.current).all()
    qtbot.keyClick(canvas, "s")  # skip the third: nothing saved for it
    third, fourth = queue[2], queue[3]
    corr = Project(p.root).correction(third.image)
    assert corr is None or not corr[1][sp_of(third.image) == third.superpixel].any()
    tags = widget.annotator.view(fourth.image).tags
    qtbot.keyClick(canvas, "1")  # the photo's first tag as the answer
    clicks = 1 + (tags[0] + 1 != fourth.current)
    assert panel.counter.text().startswith(f"answers 3 · clicks {clicks} · looks {3 - clicks}")
    widget.show_image((widget.current + 1) % len(p))  # leaving the image saves nothing over the answers
    panel.button.click()  # stopping at once writes the last answer
    assert not panel.active and "Suggestion" not in widget.viewer.layers and widget.annotator.unwritten == 0
    labels, set_mask = Project(p.root).correction(fourth.image)
    assert (labels[sp_of(fourth.image) == fourth.superpixel] == tags[0] + 1).all()
    labels, set_mask = Project(p.root).correction(first.image)
    assert (labels[sp_of(first.image) == first.superpixel] == first.proposed).all()
