"""The "SPN annotator" dock: browse a project's images, review evidence, correct labels.

A thin view over :class:`spn_napari.annotator.Annotator` (no torch here): the image list, the
layers of the shown image, the correction tools (napari's paint/fill/erase, superpixel fill, class
swap, accept/reject) and autosave. Keys: N next unreviewed, P previous, A accept, R reject.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QHeaderView, QLabel,
                            QLineEdit, QProgressBar, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem,
                            QVBoxLayout, QWidget)

from ..annotator import Annotator, superpixel_fill, swap_class
from ..errors import SpnError
from ..napari_io import layer_specs
from .child_job import ChildJob

AUTOSAVE_MS = 5000
COLUMNS = ("image", "status", "tags", "confidence")
HISTORY_COLUMNS = ("round", "parent", "mIoU", "changed", "time s")


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.3f}"


class AnnotatorWidget(QWidget):
    """Dock widget: open a project, pick an image, correct its labels; saves as you go."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.annotator: Annotator | None = None
        self.current: int | None = None
        self.unsaved_error: str | None = None

        self.path = QLineEdit(placeholderText="project folder")
        open_btn = QPushButton("Open…")
        open_btn.clicked.connect(self._browse)
        self.path.returnPressed.connect(lambda: self.open_project(self.path.text()))
        top = QHBoxLayout()
        top.addWidget(self.path)
        top.addWidget(open_btn)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.cellClicked.connect(lambda row, _col: self.show_image(self._row_index(row)))

        nav = QHBoxLayout()
        for text, slot in (("◀ Prev (P)", self.previous), ("Next unreviewed (N) ▶", self.next_unreviewed),
                           ("Accept (A)", self.accept), ("Reject (R)", self.reject)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            nav.addWidget(b)

        self.klass = QComboBox()
        self.klass.currentIndexChanged.connect(self._class_changed)
        self.sp_fill = QCheckBox("Superpixel fill (click/drag paints whole superpixels)")
        self.sp_fill.toggled.connect(self._sp_fill_toggled)
        self.swap_from, self.swap_to = QComboBox(), QComboBox()
        swap_btn = QPushButton("Swap")
        swap_btn.clicked.connect(lambda: self.swap(self.swap_from.currentIndex(), self.swap_to.currentIndex()))
        swap = QHBoxLayout()
        swap.addWidget(QLabel("class"))
        swap.addWidget(self.swap_from)
        swap.addWidget(QLabel("→"))
        swap.addWidget(self.swap_to)
        swap.addWidget(swap_btn)
        cls_row = QHBoxLayout()
        cls_row.addWidget(QLabel("class"))
        cls_row.addWidget(self.klass)

        self.status = QLabel("open a project folder (or File › Open a project)")
        self.status.setWordWrap(True)

        # long work in a child process
        from ..jobs import devices
        self.job: ChildJob | None = None
        self.device = QComboBox()
        self.device.addItems(devices())
        self.epochs = QSpinBox(minimum=0, maximum=1000, value=0, specialValueText="default")
        run_row, self.step_buttons = QHBoxLayout(), {}
        for step, text in (("superpixels", "Superpixels"), ("train-spn", "Train SPN"),
                           ("pseudo-labels", "Pseudo-labels"), ("round", "Run refinement round")):
            b = QPushButton(text)
            b.clicked.connect(lambda _=False, step=step: self.run_step(step))
            run_row.addWidget(b)
            self.step_buttons[step] = b
        opts = QHBoxLayout()
        opts.addWidget(QLabel("device"))
        opts.addWidget(self.device)
        opts.addWidget(QLabel("epochs"))
        opts.addWidget(self.epochs)
        self.progress = QProgressBar()
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        prog = QHBoxLayout()
        prog.addWidget(self.progress)
        prog.addWidget(self.cancel_btn)
        self.job_info = QLabel("")
        self.history = QTableWidget(0, len(HISTORY_COLUMNS))
        self.history.setHorizontalHeaderLabels(HISTORY_COLUMNS)
        self.history.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.history.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.history.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        hist_btns = QHBoxLayout()
        for text, slot in (("Show round", self.show_round), ("Roll back to round", self.rollback)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            hist_btns.addWidget(b)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table)
        layout.addLayout(nav)
        layout.addLayout(cls_row)
        layout.addWidget(self.sp_fill)
        layout.addLayout(swap)
        layout.addWidget(self.status)
        layout.addLayout(opts)
        layout.addLayout(run_row)
        layout.addLayout(prog)
        layout.addWidget(self.job_info)
        layout.addWidget(QLabel("rounds (* = current)"))
        layout.addWidget(self.history)
        layout.addLayout(hist_btns)

        self.timer = QTimer(self)
        self.timer.timeout.connect(self.save)
        self.timer.start(AUTOSAVE_MS)
        self._bind_keys(self.viewer)
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
        from ..store import Project
        self.save()
        try:
            self.annotator = Annotator(Project(Path(path)))
        except SpnError as exc:
            self._notify(str(exc), error=True)
            return False
        self.path.setText(str(path))
        names = ["background", *self.annotator.project.classes]
        for combo in (self.klass, self.swap_from, self.swap_to):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            combo.blockSignals(False)
        self.klass.setCurrentIndex(1 if len(names) > 1 else 0)
        self.current = None
        self.refresh_table()
        self.refresh_history()
        first = self.annotator.next_unreviewed(len(self.annotator.project) - 1)
        self.show_image(image if image is not None else (first if first is not None else 0))
        return True

    def refresh_table(self) -> None:
        rows = self.annotator.rows()
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, key in enumerate(("name", "review", "tags", "confidence")):
                value = row[key]
                item = QTableWidgetItem()
                item.setData(Qt.ItemDataRole.DisplayRole, "—" if value is None else value)
                item.setData(Qt.ItemDataRole.UserRole, row["index"])
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)

    def _row_index(self, row: int) -> int:
        return int(self.table.item(row, 0).data(Qt.ItemDataRole.UserRole))

    def show_image(self, i: int) -> None:
        if self.annotator is None or i is None:
            return
        self.save()
        self.current = i
        view = self.annotator.view(i)
        for data, kwargs, kind in layer_specs(self.annotator.project, view):
            name = kwargs["name"]
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                layer.data = data
                layer.metadata = kwargs["metadata"]
                if kind == "labels" and name == "labels":
                    layer._reset_history() if hasattr(layer, "_reset_history") else None
            else:
                getattr(self.viewer, f"add_{kind}")(data, **kwargs)
        self._class_changed()
        self.labels_layer.mode = "paint"
        self.viewer.layers.selection.active = self.labels_layer
        self._hook_labels_layer()
        self.viewer.reset_view()
        self.status.setText(f"{view.name}: {self.annotator.project.review(i)} — "
                            f"{int(view.set_mask.sum())} pixels corrected")

    @property
    def labels_layer(self):
        return self.viewer.layers["labels"]

    def _class_changed(self) -> None:
        if self.annotator is None or self.current is None:
            return
        c = self.klass.currentIndex()
        view = self.annotator.view(self.current)
        for method, maps in view.evidence.items():
            if method.upper() in self.viewer.layers and c > 0:
                layer = self.viewer.layers[method.upper()]
                layer.data = maps[c - 1]
                layer.contrast_limits = (0.0, max(float(maps[c - 1].max()), 1e-6))
        if "labels" in self.viewer.layers:
            self.labels_layer.selected_label = c

    # ---- tools ----------------------------------------------------------------------------
    def _hook_labels_layer(self) -> None:
        layer = self.labels_layer
        if getattr(layer, "_spn_hooked", False):
            return
        layer._spn_hooked = True
        layer.mouse_drag_callbacks.append(self._sp_fill_drag)
        self._bind_keys(layer)  # layer keys win over viewer keys while the layer is selected

    def _bind_keys(self, target) -> None:
        """N next unreviewed, P previous, A accept, R reject on the viewer or a layer."""
        for key, fn in (("n", self.next_unreviewed), ("p", self.previous), ("a", self.accept), ("r", self.reject)):
            target.bind_key(key, lambda _target, fn=fn: fn(), overwrite=True)

    def _sp_fill_toggled(self, on: bool) -> None:
        if "labels" in self.viewer.layers:
            self.labels_layer.mode = "pan_zoom" if on else "paint"
        scene = getattr(self.viewer, "scene", None)  # napari ≥ 0.9; viewer.camera before
        (scene.camera if scene is not None else self.viewer.camera).mouse_pan = not on

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
            self._notify("no superpixels in this project yet — run `spn-napari superpixels` first")
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
            self._notify("every image is reviewed")
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
            self._notify(f"could not save {what}: {exc} — your edits are kept; retrying", error=True)
            return
        self.refresh_table()
        self.next_unreviewed()

    def save(self) -> bool:
        """Store the shown image's edits (autosave, image switch, close). A failure is shown and
        the edits stay in the layer, to be saved on the next attempt."""
        if self.annotator is None or self.current is None or "labels" not in self.viewer.layers:
            return False
        try:
            wrote = self.annotator.save(self.current, np.asarray(self.labels_layer.data))
        except (OSError, SpnError) as exc:
            self.unsaved_error = str(exc)
            self._notify(f"could not save corrections: {exc} — they are kept and retried", error=True)
            return False
        self.unsaved_error = None
        return wrote

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt)
        self.save()
        self.timer.stop()
        self.cancel()
        super().closeEvent(event)

    # ---- long work: child processes -----------------------------------------------------
    def run_step(self, step: str) -> ChildJob | None:
        """Start one CLI step on the open project in a child process (one at a time)."""
        from ..jobs import command
        if self.annotator is None:
            self._notify("open a project first")
            return None
        if self.job is not None and self.job.running():
            self._notify("a job is already running — wait for it or cancel it")
            return None
        self.save()  # the child reads the corrections from the project
        extra = (["--epochs", str(self.epochs.value())]
                 if step in ("train-spn", "round") and self.epochs.value() > 0 else [])
        argv = command(step, self.annotator.project.root, device=self.device.currentText(), extra=extra)
        self.job = ChildJob(argv, self)
        self.job.progressed.connect(self._on_event)
        self.job.finished.connect(lambda ok, msg, step=step: self._on_finished(step, ok, msg))
        self.progress.setRange(0, 0)  # busy until the first event says how much there is
        self.cancel_btn.setEnabled(True)
        self.job_info.setText(f"{step}: starting…")
        self.job.start()
        return self.job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _on_event(self, ev) -> None:
        if ev.total:
            self.progress.setRange(0, ev.total)
            self.progress.setValue(min(ev.step, ev.total))
        parts = [ev.event]
        if "loss" in ev.data:
            parts.append(f"loss {ev.data['loss']:.3f}")
        if ev.total and ev.step and self.job is not None and self.job.started_at is not None:
            import time
            left = (time.monotonic() - self.job.started_at) * (ev.total - ev.step) / ev.step
            parts.append(f"ETA {left:.0f} s")
        self.job_info.setText(" · ".join(parts))

    def _on_finished(self, step: str, ok: bool, message: str) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if ok else 0)
        self.cancel_btn.setEnabled(False)
        if not ok:
            self.job_info.setText(message)
            self._notify(f"{step}: {message}", error=not message.startswith("cancelled"))
            return
        self.job_info.setText(f"{step}: done")
        self.save()
        self._reload()

    def _reload(self) -> None:
        """The project changed underneath (a round ended, a rollback): rebuild the lists and the
        shown image from it, without saving the stale labels on screen as a correction."""
        self.annotator.forget()
        shown, self.current = self.current, None
        self.refresh_table()
        self.refresh_history()
        self.show_image(shown if shown is not None else 0)

    # ---- rounds -----------------------------------------------------------------------------
    def refresh_history(self) -> None:
        from ..rounds import current_round, history
        rows, cur = history(self.annotator.project), current_round(self.annotator.project)
        self.history.setRowCount(len(rows))
        for r, e in enumerate(rows):
            m = e.get("metrics", {})
            cells = (f"{'*' if e['round'] == cur else ''}{e['round']}", "—" if e["parent"] is None else e["parent"],
                     _fmt(m.get("miou")), _fmt(m.get("changed")), f"{e.get('seconds', 0):.0f}")
            for c, v in enumerate(cells):
                item = QTableWidgetItem(str(v))
                item.setData(Qt.ItemDataRole.UserRole, e["round"])
                self.history.setItem(r, c, item)

    def _selected_round(self) -> int | None:
        rows = self.history.selectionModel().selectedRows() if self.history.selectionModel() else []
        if not rows:
            self._notify("select a round in the table first")
            return None
        return int(self.history.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole))

    def show_round(self) -> None:
        """Add the selected round's labels of the shown image as a read-only layer to compare."""
        from ..rounds import labels_kind
        r = self._selected_round()
        if r is None or self.current is None:
            return
        data = self.annotator.project.read(labels_kind(r), self.current)
        name = f"round {r}"
        if name in self.viewer.layers:
            self.viewer.layers[name].data = data
        else:
            self.viewer.add_labels(data, name=name, opacity=0.5, colormap=self.labels_layer.colormap,
                                   features=self.labels_layer.features)
        self.viewer.layers[name].editable = False

    def rollback(self) -> None:
        from ..rounds import rollback
        r = self._selected_round()
        if r is None:
            return
        self.save()
        try:
            rollback(self.annotator.project, r)
        except SpnError as exc:
            self._notify(str(exc), error=True)
            return
        self._reload()

    def _notify(self, message: str, *, error: bool = False) -> None:
        from napari.utils.notifications import show_error, show_info
        (show_error if error else show_info)(message)
        self.status.setText(message)
