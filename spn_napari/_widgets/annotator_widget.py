"""The "SPN annotator" dock: browse a project's images, review evidence, correct labels.

A thin view over :class:`spn_napari.review.annotator.Annotator` (no torch here): the image list (a Qt
model over the project's columns, :mod:`.image_list`: an Accept updates one row), the layers of
the shown image, the correction tools (napari's paint/fill/erase, superpixel fill, class
swap, accept/reject), autosave, and segmenting any open image layer with the project's model
(:mod:`.segment_panel`). The class box follows the shown photo: its tags first (the one with the
most labelled area chosen), and the paint label and the class box follow each other.

Keys: N next unreviewed, P previous, A accept, R reject, 1–9 the image's n-th tag, O labels as
outlines or filled, U the Unsure layer, G the shown image's row into view; while checking
suggestions (:mod:`.suggestions_panel`) Y accepts the proposal, 1–9 answers with a tag, C marks the
superpixel correct and S skips it. The keys work wherever the focus is in the window: on the
canvas and the dock's layers (napari key bindings), and on the dock's own lists, boxes and buttons
(an event filter; text fields keep their typing). The list's selected row is always the shown
photo: moving it with the arrow keys shows that photo.

Closing the window, the dock or the project saves the pending edits first and stops the dock's
children (a run, Segment, Propagate), waiting for them to end. While a run goes on, what would
conflict with it is disabled: opening another project, the other run steps, rolling back.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
from qtpy.QtCore import QEvent, QItemSelectionModel, Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QTableView,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from ..errors import SpnError
from ..napari_io import LABELS_OPACITY, evidence_limits, layer_specs
from ..review.annotator import Annotator, superpixel_fill, swap_class
from .image_list import CONFIDENCE, STATUS, TAGS, ImageListModel
from .live_worker import LiveWorker
from .photo_layers import PhotoLayers
from .rounds_panel import RoundsPanel
from .run_panel import RunPanel
from .section import Section
from .segment_panel import SegmentPanel
from .steady_label import SteadyLabel
from .suggestions_panel import SuggestionsPanel

AUTOSAVE_MS = 5000
OUTLINE_WIDTH = 2  # pixels of a label's outline in the O (outlines) view
CELL_PAD = 12  # pixels either side of a list cell's text
NAME_WIDTH_MAX = 220  # pixels: the image column is never wider (a long path is cut; its tooltip is whole)


def keep_heap_quiet() -> None:
    """Leave the objects alive now (napari's, the dock's, the project's: some 350,000) out of
    Python's later full garbage collections. Each full collection scans them all, 120-150 ms on
    2 cores: a stutter at a random stroke, Segment or round loading. Cyclic garbage alive at
    this moment is kept (small: the viewer's start-up and the last project's)."""
    gc.freeze()


class _ImageTable(QTableView):
    """The image list's view without type-ahead: a typed letter is a dock key (N, A, …), never a
    jump of the selection to a row whose name starts with it."""

    def keyboardSearch(self, search: str) -> None:  # noqa: N802 (Qt's name)
        pass


def _key_name(event) -> str | None:
    """The dock's name of a key press ("n", "2", "Backspace"), or None with Ctrl, Alt or Meta held."""
    held = event.modifiers() & ~(Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.KeypadModifier)
    if held != Qt.KeyboardModifier.NoModifier:
        return None
    if event.key() == Qt.Key.Key_Backspace:
        return "Backspace"
    return event.text().lower() or None


class AnnotatorWidget(QWidget):
    """Dock widget: open a project, pick an image, correct its labels; saves as you go."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.annotator: Annotator | None = None
        self.current: int | None = None
        self.unsaved_error: str | None = None
        self._opening: Path | None = None  # the project an 'init' child is creating
        self.photo_layers = PhotoLayers(napari_viewer, self)
        self._hooked: dict = {}  # layer name -> the layer object the dock has connected to
        self._setting_label = False  # the dock itself is setting the paint label
        self.live: LiveWorker | None = None  # the live head's child (Propagate)
        self._closed = False  # shutdown() ran: nothing starts again
        self._window_ref = lambda: None  # weak: the top-level window whose close this dock watches
        self._round_note = ""  # the last round's announcement, kept on the status line until the next photo

        self.path = QLineEdit(placeholderText="project folder")
        self.open_btn = QPushButton("Open…")
        self.open_btn.clicked.connect(self._browse)
        self.path.returnPressed.connect(lambda: self.open_project(self.path.text()))
        top = QHBoxLayout()
        top.addWidget(self.path)
        top.addWidget(self.open_btn)
        self.no_background = QCheckBox("Importing a data set: every pixel is a class (no background)")
        self.no_background.setToolTip("For data sets like MSRC, CamVid or ADE20K, where sky, grass and road "
                                      "are classes: each pixel takes the best of its image's tags "
                                      "(spn-napari init --no-background)")

        # the image list: a view over a model of the project's columns (see image_list.py)
        self.image_list = ImageListModel(self)
        self.table = _ImageTable()
        self.table.setModel(self.image_list)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(TAGS, QHeaderView.ResizeMode.Stretch)  # the tags get what is left
        for col, widest in ((STATUS, "unreviewed"), (CONFIDENCE, "confidence")):
            header.resizeSection(col, self.table.fontMetrics().horizontalAdvance(widest) + 2 * CELL_PAD)
        header.setSortIndicator(0, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)  # sorts by name; a header click sorts by its column
        # a new order starts at its top (the shown image's row stays selected; key G scrolls to it)
        header.sortIndicatorChanged.connect(lambda *_: self.table.scrollToTop())
        self.table.setWordWrap(False)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 6)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        # a click, an arrow key or Page Down in the list shows that row's photo
        self.table.selectionModel().currentRowChanged.connect(self._row_chosen)

        nav = QHBoxLayout()
        for text, slot in (("◀ Prev (P)", self.previous), ("Next unreviewed (N) ▶", self.next_unreviewed),
                           ("Accept (A)", self.accept), ("Reject (R)", self.reject)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            nav.addWidget(b)

        self.klass = QComboBox()
        self.klass.setPlaceholderText("pick a class")
        self.klass.setToolTip("the class to paint and whose evidence SP-CAM/CAM show: the photo's tags first "
                              "(keys 1–9), the one with the most labelled area chosen")
        self.klass.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.klass.setMinimumContentsLength(12)
        self.klass.currentIndexChanged.connect(self._class_changed)
        self.outlines = QCheckBox("outlines (O)")
        self.outlines.setToolTip("draw the labels as outlines over the photo instead of filled")
        self.outlines.toggled.connect(self._outlines_toggled)
        self.unsure = QCheckBox("unsure (U)")
        self.unsure.setToolTip("hatch in white and black the pixels whose evidence for their best two tags is close: "
                               "the ones round 1 does not learn from unless you set them")
        self.unsure.toggled.connect(self._unsure_toggled)
        self.sp_fill = QCheckBox("Superpixel fill (click/drag paints whole superpixels)")
        self.sp_fill.toggled.connect(self._sp_fill_toggled)
        self.propagate = QCheckBox("Propagate")
        self.propagate.setChecked(True)
        self.propagate.setToolTip("after every saved correction (an answer, a fill, a stroke, Accept, an undo) the "
                                  "live head relabels every unreviewed photo from it, in the background; your own "
                                  "pixels never change (spn-napari propagate). Off: a correction changes only "
                                  "what you set, until a round")
        self.propagate.toggled.connect(self._propagate_toggled)
        self.swap_from, self.swap_to = QComboBox(), QComboBox()
        swap_btn = QPushButton("Swap")
        swap_btn.clicked.connect(lambda: self.swap(self._value(self.swap_from.currentIndex()),
                                                   self._value(self.swap_to.currentIndex())))
        swap = QHBoxLayout()
        swap.addWidget(QLabel("class"))
        swap.addWidget(self.swap_from)
        swap.addWidget(QLabel("→"))
        swap.addWidget(self.swap_to)
        swap.addWidget(swap_btn)
        cls_row = QHBoxLayout()
        cls_row.addWidget(QLabel("class"))
        cls_row.addWidget(self.klass, 1)
        cls_row.addWidget(self.outlines)
        cls_row.addWidget(self.unsure)

        self.status = SteadyLabel("open a project folder (or File › Open a project)", lines=2)

        self.runs = RunPanel(lambda: None if self.annotator is None else self.annotator.project.root,
                             self.save, self.notify)
        self.runs.step_started.connect(self._on_step_started)
        self.runs.step_finished.connect(self._on_step_finished)
        self.rounds = RoundsPanel(self)
        self.segmenting = SegmentPanel(self)
        self.suggestions = SuggestionsPanel(self)
        # folded at first, so the image list gets the height (>= 12 rows at 1600x1000)
        self.sections = {name: Section(title, panel) for name, title, panel in (
            ("run", "Run", self.runs), ("segment", "Segment", self.segmenting), ("rounds", "Rounds", self.rounds))}
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.no_background)
        layout.addWidget(self.table, 1)
        layout.addLayout(nav)
        layout.addLayout(cls_row)
        fill_row = QHBoxLayout()
        fill_row.addWidget(self.sp_fill, 1)
        fill_row.addWidget(self.propagate)
        layout.addLayout(fill_row)
        layout.addLayout(swap)
        layout.addWidget(self.status)
        layout.addWidget(self.suggestions)
        for section in self.sections.values():
            layout.addWidget(section)

        self.timer = QTimer(self)
        self.timer.timeout.connect(self.save)
        self.timer.start(AUTOSAVE_MS)
        self.bind_keys(self.viewer)
        self._keys = dict(self._dock_keys())
        for child in [self, *self.findChildren(QWidget)]:
            if not isinstance(child, (QLineEdit, QAbstractSpinBox, QTextEdit)):  # text fields keep their typing
                child.installEventFilter(self)
        self._pick_up_reader_layers()

    # ---- project and images ---------------------------------------------------------------
    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open an spn-napari project")
        if path:
            self.open_project(path)

    def _pick_up_reader_layers(self) -> None:
        """A project opened with File › Open (the reader) is adopted by the dock."""
        for layer in self.viewer.layers:
            root = layer.metadata.get("spn_project") if hasattr(layer, "metadata") else None
            if root:
                self.open_project(root, image=layer.metadata.get("spn_image", 0))
                return

    def open_project(self, path, image: int | None = None) -> bool:
        from ..project.store import Project, is_project
        if self._closed:
            return False
        if self.runs.running():
            self.notify("a run is going on in this project: wait for it or Cancel it (Run), then open another",
                        error=True)
            return False
        if not is_project(path):
            if self._is_dataset(path):
                return self.create_project(path) is not None
            self.notify(f"{path}: neither an spn-napari project nor a data set folder — open a project, "
                        f"or a data set (classes.txt, images/ and labels.csv; or VOC2012 with JPEGImages/) "
                        f"to import it", error=True)
            return False
        self._watch_window()
        self.save()
        try:
            self.annotator = Annotator(Project(Path(path)))
        except SpnError as exc:
            self.notify(str(exc), error=True)
            return False
        self.current = None  # an index into the previous project: nothing may read it from this one
        self.suggestions.stop()
        self.segmenting.stop()
        if self.live is not None:
            self.live.stop()
        self.live = LiveWorker(Path(path), self)  # its child starts at the first saved correction
        self.live.relabelled.connect(self.on_relabelled)
        self.live.notice.connect(self.notify)
        self.live.progressed.connect(self._live_opening)
        self.path.setText(str(path))
        names = self.annotator.project.label_names()  # no 'background' in a project without one
        for combo in (self.swap_from, self.swap_to):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            combo.blockSignals(False)
        self.refresh_list()
        self.rounds.refresh()
        self.segmenting.refresh()
        first = self.annotator.next_unreviewed(len(self.annotator.project) - 1)
        self.show_image(image if image is not None else (first if first is not None else 0))
        QTimer.singleShot(0, keep_heap_quiet)
        return True

    @staticmethod
    def _is_dataset(path) -> bool:
        from ..data.readers import detect_layout
        try:
            detect_layout(path)
        except SpnError:
            return False
        return True

    def create_project(self, dataset, project=None):
        """Import data set folder ``dataset`` into a new project (default: a sibling
        ``NAME-project``) in a child process, then open it; returns the child job. The
        "no background" box decides whether the project has a background class."""
        from ..jobs import default_project_for, init_command
        project = Path(project) if project else default_project_for(dataset)
        self.notify(f"{dataset} is a data set: importing it into the new project {project}")
        job = self.runs.start("init", init_command(dataset, project,
                                                   background=not self.no_background.isChecked()))
        if job is not None:
            self._opening = project
        return job

    def refresh_list(self) -> None:
        """Load the image list from the project (on open and reload only: an Accept or Reject
        updates its one row, see ``_review``)."""
        columns = self.annotator.columns()
        self.image_list.load(columns, self.annotator.project.review)
        names = columns["name"][:1000]  # the width of the longest name among the first 1,000: a bounded cost
        if len(names):
            width = self.table.fontMetrics().horizontalAdvance(max(names, key=len)) + 2 * CELL_PAD
            self.table.horizontalHeader().resizeSection(0, min(width, NAME_WIDTH_MAX))

    def _select_row(self, i: int) -> None:
        """Select image i's row in the list and scroll to it (one row, whatever the sort)."""
        index = self.image_list.index(self.image_list.row_of(i), 0)
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        self.table.selectionModel().setCurrentIndex(index, flags)
        self.table.scrollTo(index)

    def _row_chosen(self, index, _previous=None) -> None:
        """The list's current row moved (a click, an arrow key): show its photo."""
        if self.annotator is not None and index.isValid():
            i = self.image_list.image_at(index.row())
            if i != self.current:
                self.show_image(i)

    def show_image(self, i: int, klass: int | None = None) -> None:
        """Show image i: replace each layer's data (a missing layer is added), then fit the view.
        ``klass``: the label value to choose in the class box (default: the photo's first tag);
        its evidence is what the layers show, set once.

        A cached switch costs napari's layer updates and the window frame that follows (~40 ms
        here, under a software OpenGL), so nothing else is done: see :class:`.PhotoLayers`."""
        if self.annotator is None or i is None:
            return
        self.save(answers=False)  # answers are written on their own timer (SuggestionsPanel)
        self._round_note = ""
        self.current = i
        self._select_row(i)
        view = self.annotator.view(i)
        c = self._fill_classes(view, klass)
        self._fill_swap(view)
        self.photo_layers.set_layers(layer_specs(self.annotator.project, view, klass=c - 1 if c else None))
        self._hook_labels_layer()
        self._set_selected_label(c or 0)
        self.labels_layer.mode = "paint"
        self.viewer.layers.selection.active = self.labels_layer
        self.photo_layers.fit_view()
        self._show_image_status()
        self.photo_layers.one_frame()

    def _show_image_status(self) -> None:
        """The status line for the shown photo: its review status, the pixels set by a person as
        saved (strokes, fills and answers), and what to do next when something is missing."""
        view, i = self.annotator.view(self.current), self.current
        missing = self.annotator.next_step()
        set_px = int(view.set_mask.sum())
        self.status.setText(f"{view.name}: {self.annotator.project.review(i)} — "
                            + (f"{set_px} pixels set by you" if set_px else "nothing corrected yet")
                            + (" · no tags: pick a class to paint" if not view.tags else "")
                            + (f" · no pseudo-labels yet: run {missing} next (Run, below)" if missing else ""))

    def _fill_classes(self, view, chosen: int | None = None) -> int | None:
        """Refill the class box for ``view``'s photo: its tags first, numbered for keys 1–9 and
        ordered by labelled area, then the other classes; label value ``chosen`` is chosen, else
        the first tag. Returns the chosen label value, or None for a photo without tags and no
        ``chosen`` (nothing is chosen for the person)."""
        names, first = self.annotator.project.label_names(), self._value(0)
        tags = [t + 1 for t in view.tags]
        self.klass.blockSignals(True)
        self.klass.clear()
        for n, v in enumerate(tags, 1):
            self.klass.addItem(f"{n}  {names[v - first]}" if n <= 9 else names[v - first], v)
        if tags:
            self.klass.insertSeparator(len(tags))
        for v in range(first, first + len(names)):
            if v not in tags:
                self.klass.addItem(names[v - first], v)
        at = self.klass.findData(int(chosen)) if chosen is not None else -1
        self.klass.setCurrentIndex(at if at >= 0 else 0 if tags else -1)
        self.klass.blockSignals(False)
        return int(chosen) if at >= 0 else tags[0] if tags else None

    def _fill_swap(self, view) -> None:
        """The Swap boxes start at the photo's two tags with the most labelled area (the likeliest
        mix-up), not at the first class of the project."""
        values = [t + 1 for t in view.tags[:2]]
        for combo, value in zip((self.swap_from, self.swap_to), values + values[:1]):
            combo.setCurrentIndex(value - self._value(0))

    def choose_class(self, value: int) -> None:
        """Choose label ``value`` (class c is c + 1) in the class box: paint label and evidence follow."""
        self.klass.setCurrentIndex(self.klass.findData(int(value)))

    def choose_tag(self, n: int) -> None:
        """Choose the shown photo's n-th tag (0-based; keys 1–9) as the class."""
        if self.annotator is None or self.current is None:
            return
        tags = self.annotator.view(self.current).tags
        if n < len(tags):
            self.choose_class(tags[n] + 1)

    @property
    def labels_layer(self):
        return self.viewer.layers["labels"]

    def _value(self, index: int) -> int:
        """The label value of entry ``index`` of the class lists (they start at 'background',
        value 0, or, in a project without a background class, at the first class, value 1)."""
        bg = self.annotator is None or self.annotator.project.has_background
        return index if bg else index + 1

    def _class_changed(self) -> None:
        c = self.klass.currentData()
        if self.annotator is None or self.current is None or c is None:
            return
        view = self.annotator.view(self.current)
        for method, maps in view.evidence.items():
            if method.upper() in self.viewer.layers and c > 0:
                self.photo_layers.set_data(method.upper(), maps[c - 1], evidence_limits(maps[c - 1]))
        if "labels" in self.viewer.layers:
            self._set_selected_label(c)

    def _set_selected_label(self, value: int) -> None:
        """The paint label set by the dock (the class box is already right: not echoed back)."""
        layer = self.labels_layer
        if layer.selected_label != value:
            self._setting_label = True
            try:
                layer.selected_label = value
            finally:
                self._setting_label = False

    def _label_picked(self, event=None) -> None:
        """The paint label changed in napari's layer controls (or its picker): the class box follows."""
        if self._setting_label:
            return
        index = self.klass.findData(int(self.labels_layer.selected_label))
        if index >= 0 and index != self.klass.currentIndex():
            self.klass.setCurrentIndex(index)

    # ---- how the labels and the evidence show ------------------------------------------------
    def _outlines_toggled(self, on: bool) -> None:
        if "labels" in self.viewer.layers:
            self._show_outlines(self.labels_layer, on)

    @staticmethod
    def _show_outlines(layer, on: bool) -> None:
        layer.contour = OUTLINE_WIDTH if on else 0
        layer.opacity = 1.0 if on else LABELS_OPACITY

    def _unsure_toggled(self, on: bool) -> None:
        if "Unsure" in self.viewer.layers:
            self.viewer.layers["Unsure"].visible = on

    def refresh_shown_labels(self, i: int) -> None:
        """Image i's view changed from elsewhere (a suggestion's answer, set in the view): when it
        is shown, put its labels into the layer (nothing to save: layer and view agree — a stale
        layer would be saved over the answer)."""
        if self.current == i and "labels" in self.viewer.layers:
            layer, new = self.labels_layer, self.annotator.view(i).labels
            changed = np.asarray(layer.data) != new  # (H, W): the answered superpixel's pixels
            if changed.any():  # painted in place: napari uploads the changed rows, not the image
                with layer.block_history():
                    layer.data_setitem(np.nonzero(changed), new[changed])

    def show_current_row(self) -> None:
        """Bring the shown image's row into view (key G), wherever the sort put it."""
        if self.current is not None:
            self._select_row(self.current)

    # ---- tools ----------------------------------------------------------------------------
    def _hook_labels_layer(self) -> None:
        """Connect the labels layer (once per layer: the dock's events and keys ride on it) and
        give it the outline setting; the Unsure box follows the Unsure layer's visibility."""
        layer = self.labels_layer
        if self._hooked.get("labels") is not layer:
            self._hooked["labels"] = layer
            layer.mouse_drag_callbacks.append(self._sp_fill_drag)
            layer.events.selected_label.connect(self._label_picked)
            self.bind_keys(layer)  # layer keys win over viewer keys while the layer is selected
            self._show_outlines(layer, self.outlines.isChecked())
        unsure = self.viewer.layers["Unsure"] if "Unsure" in self.viewer.layers else None
        self.unsure.setEnabled(unsure is not None)
        if unsure is not None and self._hooked.get("Unsure") is not unsure:
            self._hooked["Unsure"] = unsure
            unsure.visible = self.unsure.isChecked()
            unsure.events.visible.connect(lambda e: self.unsure.setChecked(bool(e.source.visible)))

    def _dock_keys(self) -> list:
        """(key, action): N next unreviewed, P previous, A accept, R reject, 1–9 the n-th tag (an
        answer while checking suggestions), O outlines, U the Unsure layer, G the current row, Y, C,
        S and Backspace while checking suggestions."""
        checking = self.suggestions
        keys = [("n", self.next_unreviewed), ("p", self.previous), ("a", self.accept), ("r", self.reject),
                ("o", self.outlines.toggle), ("u", self.unsure.toggle), ("g", self.show_current_row),
                ("y", checking.accept), ("c", checking.correct), ("s", checking.skip), ("Backspace", checking.undo)]
        return keys + [(str(k), lambda k=k: checking.tag(k - 1) if checking.active else self.choose_tag(k - 1))
                       for k in range(1, 10)]

    def bind_keys(self, target) -> None:
        """The dock's keys on the viewer or a layer (a layer's keys win over the viewer's while it
        is selected: the dock's own layers and those it adds, a segmentation or a round to compare,
        carry them)."""
        for key, fn in self._dock_keys():
            target.bind_key(key, lambda _target, fn=fn: fn(), overwrite=True)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt's name)
        """The dock's keys on its own widgets (the image list, the class box, a button): a key the
        dock knows is the dock's, wherever the focus is. The watched window's close saves first."""
        kind = event.type()
        window = self._window_ref()
        if kind == QEvent.Type.KeyPress and obj is not window:
            fn = self._keys.get(_key_name(event))
            if fn is not None:
                fn()
                return True
        elif kind == QEvent.Type.Close and obj is window and obj is not None:
            self.shutdown()
        return super().eventFilter(obj, event)

    def _watch_window(self) -> None:
        """Watch the window this dock is in: its close (napari's window, File › Close) saves the
        edits and stops the children before Qt destroys them. Looked up again when the dock is
        shown, re-parented or opens a project (it may be docked before its window is shown)."""
        window, watched = self.window(), self._window_ref()
        if window is not self and window is not watched:
            if watched is not None:
                watched.removeEventFilter(self)
            self._window_ref = weakref.ref(window)
            window.installEventFilter(self)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self._watch_window()
        super().showEvent(event)

    def _sp_fill_toggled(self, on: bool) -> None:
        if "labels" in self.viewer.layers:
            self.labels_layer.mode = "pan_zoom" if on else "paint"
        self.viewer.scene.camera.mouse_pan = not on

    def _sp_fill_drag(self, layer, event):
        if not self.sp_fill.isChecked():
            return
        points = [layer.world_to_data(event.position)[-2:]]
        yield
        while event.type == "mouse_move":
            points.append(layer.world_to_data(event.position)[-2:])
            yield
        self.fill_superpixels(points)

    def fill_superpixels(self, points) -> int:
        """Paint every superpixel under the (row, col) points with the selected class, as one undo
        step; returns the number of pixels painted."""
        view = self.annotator.view(self.current) if self.annotator and self.current is not None else None
        if view is None or view.superpixels is None:
            self.notify("no superpixels in this project yet — run `spn-napari superpixels` first")
            return 0
        mask = superpixel_fill(view.superpixels, points)
        self._paint(mask, self.labels_layer.selected_label)
        return int(mask.sum())

    def swap(self, a: int, b: int) -> int:
        """Class a → class b in the shown image (one undo step); returns the pixels changed."""
        mask = swap_class(np.asarray(self.labels_layer.data), a, b)
        self._paint(mask, b)
        return int(mask.sum())

    def _paint(self, mask: np.ndarray, value: int) -> None:
        if mask.any():
            layer = self.labels_layer
            with layer.block_history():  # one undo step
                layer.data_setitem(np.nonzero(mask), value)

    # ---- review and saving ----------------------------------------------------------------
    def previous(self) -> None:
        if self.current is not None:
            self.show_image((self.current - 1) % len(self.annotator.project))

    def next_unreviewed(self) -> None:
        if self.annotator is None:
            return
        nxt = self.annotator.next_unreviewed(self.current if self.current is not None else -1)
        if nxt is None:
            self.notify("every image is reviewed")
        else:
            self.show_image(nxt)

    def accept(self) -> None:
        self._review("accept")

    def reject(self) -> None:
        self._review("reject")

    def _review(self, what: str) -> None:
        if self.annotator is None or self.current is None:
            return
        labels = np.asarray(self.labels_layer.data)
        try:
            getattr(self.annotator, what)(self.current, labels)
        except (OSError, SpnError) as exc:
            self.notify(f"could not save {what}: {exc} — your edits are kept; retrying", error=True)
            return
        self._corrections_saved([self.current])
        self.image_list.update_row(self.current)  # its status; the other rows are as they were
        self.next_unreviewed()

    def save(self, answers: bool = True) -> bool:
        """Store the shown image's edits (autosave, image switch, close) and, unless ``answers``
        is False, the suggestions' answers not written yet. The edits are read from the labels
        layer the dock showed them in, which napari's close has already taken out of the viewer. A failure is shown and the edits stay
        in the layer (the answers in the dock's views), to be saved on the next attempt."""
        if self.annotator is None:
            return False
        written: list[int] = []
        try:
            if answers:
                written += self.annotator.write_answers()
            layer = self._hooked.get("labels")  # the shown photo's layer, even once napari removed it
            if self.current is None or layer is None:
                return False
            wrote = self.annotator.save(self.current, np.asarray(layer.data))
            written += [self.current] if wrote else []
        except (OSError, SpnError) as exc:
            self.unsaved_error = str(exc)
            self.notify(f"could not save corrections: {exc} — they are kept and retried", error=True)
            return False
        finally:
            self._corrections_saved(written)
        self.unsaved_error = None
        if wrote and not self.suggestions.active:
            self._show_image_status()
        return wrote

    # ---- live propagation ----------------------------------------------------------------
    def _corrections_saved(self, images: list[int]) -> None:
        """Photos whose corrections were just saved: the live head refits after them (Propagate)."""
        if images and self.live is not None and self.propagate.isChecked():
            self.live.changed(images)

    def _propagate_toggled(self, on: bool) -> None:
        if self.live is None:
            return
        if on:
            self.save()
            self.live.changed()  # what was saved while it was off
        else:
            self.live.stop()

    def _live_opening(self, ev: dict) -> None:
        """The live head's child is opening (the first time for a round's labels: a pass over the photos)."""
        what = {"descriptors": "making the superpixel descriptors", "table": "reading the labels"}.get(
            ev.get("what"), ev.get("what"))
        if ev.get("step") in (1, ev.get("total")) or int(ev.get("step", 0)) % 25 == 0:
            text = f"Propagate: {what}, {ev.get('step')}/{ev.get('total')} photos (once a round)"
            if self.suggestions.active:  # the status line holds the suggestion's question
                self.suggestions.note(text)
            elif not self._round_note:
                self.status.setText(text)

    def on_relabelled(self, ev: dict) -> None:
        """The live head's answer: on 'done' the shown photo, the cached ones and the suggestion
        queue take the new labels, and the status says what changed; on 'error' it is shown (the
        switch goes off when the project cannot be propagated at all)."""
        if self.annotator is None:
            return
        if ev.get("event") == "error":
            self.notify(f"Propagate: {ev.get('message')}", error=True)
            if ev.get("id") is None:
                self.propagate.blockSignals(True)
                self.propagate.setChecked(False)
                self.propagate.blockSignals(False)
            return
        self.save()  # the strokes on screen first: they were made over the labels the layer shows
        self.annotator.relabelled(self.current)
        if self.current is not None:
            self.refresh_shown_labels(self.current)
        changed, photos = int(ev.get("changed", 0)), int(ev.get("photos", 0))
        if self.suggestions.active:
            self.suggestions.relabelled(changed, photos)
        elif self._round_note:  # the round's labels propagated with the corrections: the announcement stays
            self.status.setText(f"{self._round_note}\nPropagate: the round's labels carry your corrections"
                                + (f" ({changed} superpixels in {photos} photos relabelled)" if changed else ""))
        else:
            self.status.setText(f"propagated: your last corrections changed {changed} superpixels in {photos} "
                                f"photos ({ev.get('seconds', 0.0):.1f} s)")

    def shutdown(self) -> None:
        """Save the pending edits and answers, then stop every child and wait for it to end (a run
        is cancelled: the project keeps its last completed step). Runs once; the window's close,
        the dock's close and its removal from the window call it."""
        if self._closed:
            return
        self.save()
        self._closed = True
        self.timer.stop()
        self.suggestions.stop()
        self.runs.stop()
        self.segmenting.stop()
        if self.live is not None:
            self.live.stop()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.shutdown()
        super().closeEvent(event)

    def event(self, event) -> bool:
        """Taken out of its window (napari's dock removal sets no parent): shut down, as on close."""
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._watch_window()
            elif self._window_ref() is not None:
                self.shutdown()
        return super().event(event)

    def hideEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        """Hidden (the dock closed or removed, the window closing): the edits on screen are saved."""
        if not self._closed:
            self.save()
        super().hideEvent(event)

    # ---- long work and rounds (the panels) ---------------------------------------------------
    def run_step(self, step: str):
        """Start one CLI step on the open project in a child process; see RunPanel."""
        return self.runs.run_step(step)

    def cancel(self) -> None:
        self.runs.cancel()

    def _on_step_started(self, step: str) -> None:
        """The status line describes the run in progress (not the last one's end), the Run
        section opens to show its progress, and what would conflict with the run is disabled."""
        self._set_busy(True)
        self.sections["run"].set_expanded(True)
        self.status.setText(f"{step}: running — progress and Cancel under Run")

    def _set_busy(self, busy: bool) -> None:
        """While a run goes on: no other project opened, no other step started, no rollback (the
        run would land on top of it). Reviewing, correcting and Segment stay usable."""
        for w in (self.open_btn, self.path, self.no_background):
            w.setEnabled(not busy)
        self.runs.set_steps_enabled(not busy)
        self.rounds.set_busy(busy)

    def _on_step_finished(self, step: str, ok: bool, message: str) -> None:
        self._set_busy(False)
        if self._closed:
            return
        if step == "init":
            if ok:
                self.open_project(self._opening)
            return
        if ok:
            self.save()
            self.reload(labels_only=step == "round", then=self._announce_round if step == "round" else None)

    def _announce_round(self) -> None:
        """A finished round, said in the viewer: its mIoU against its parent's (when the project
        has ground truth), else how much of the labels it changed; the Rounds table shows its row."""
        entries = {e["round"]: e for e in self.annotator.project.rounds()}
        r = self.annotator.project.current_round()
        entry = entries.get(r, {})
        m = entry.get("metrics", {}).get("miou")
        parent = entries.get(entry.get("parent"), {})
        pm = parent.get("metrics", {}).get("miou")
        both = m is not None and pm is not None
        text = f"round {r} is done"
        if both:
            text += f": mIoU {m:.3f}, round {entry['parent']} had {pm:.3f} ({'+' if m >= pm else '−'}{abs(m - pm):.3f})"
        elif m is not None:
            text += f": mIoU {m:.3f}"
        elif entry.get("metrics", {}).get("changed") is not None:
            text += f": {100 * entry['metrics']['changed']:.1f} % of the pixels changed"
        # a notification shows its first words only: with both numbers, they come first, short
        self.notify(f"round {r} done: mIoU {m:.3f} (round {entry['parent']}: {pm:.3f})" if both else text)
        lower = both and m < pm
        self._round_note = text + (" — lower: Roll back (Rounds) brings the previous labels back" if lower
                                   else " — its labels are shown")
        self.status.setText(self._round_note)
        self.sections["rounds"].set_expanded(True)
        self.rounds.show_current()

    def reload(self, labels_only: bool = False, then=None) -> None:
        """The project changed underneath (a round ended, a rollback): rebuild the lists and the
        shown image from it, without saving the stale labels on screen as a correction.

        ``labels_only`` (a round, a rollback: the photos, superpixels and evidence are as they
        were): the shown photo's labels are read again and painted in place, the other cached
        views read theirs when next shown. The image list, the round table and Segment's choices
        follow in later turns of the event loop, each its own short slice, so the viewer never
        waits for all of it at once; ``then()`` runs after them."""
        self.suggestions.stop()  # its queue was made from the old labels
        if labels_only and self.current is not None:
            self.annotator.relabelled(self.current)
            self.refresh_shown_labels(self.current)
            self._show_image_status()
            QTimer.singleShot(0, lambda: self._reload_lists(then))
        else:
            self.annotator.forget()
            shown, self.current = self.current, None
            self.refresh_list()
            self.show_image(shown if shown is not None else 0)
            self._reload_lists(then, image_list=False)
        if self.live is not None and self.propagate.isChecked() and any(self.annotator.project.corrected()):
            self.live.changed()  # the new round's labels, propagated with every correction so far

    def _reload_lists(self, then=None, image_list: bool = True) -> None:
        """The second part of :meth:`reload`: the image list (its confidence column), then the
        round table and Segment's choices, a turn of the event loop each."""
        if self._closed or self.annotator is None:
            return
        if image_list:
            self.refresh_list()
            if self.current is not None:
                self._select_row(self.current)

        def rest():
            if self._closed or self.annotator is None:
                return
            self.rounds.refresh()
            self.segmenting.refresh()
            if then is not None:
                QTimer.singleShot(0, then)
        QTimer.singleShot(0, rest)

    def notify(self, message: str, *, error: bool = False) -> None:
        """A notification in the viewer (napari's pop-up) and the dock's status line: for errors
        and what a person must not miss (a round's end)."""
        from napari.utils.notifications import show_error, show_info
        (show_error if error else show_info)(message)
        self.say(message)

    def say(self, message: str) -> None:
        """The dock's status line alone: for news that answers the click just made (Segment
        started, done). napari's pop-up slides in and fades over several frames, each a repaint
        of the window over the canvas; a routine message must not cost the viewer those frames."""
        self.status.setText(message)
