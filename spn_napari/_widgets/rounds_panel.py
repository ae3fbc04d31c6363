"""The dock's "rounds" panel: the round history table, a per-round mIoU plot, and showing or
rolling back to any earlier round (all through :mod:`spn_napari.rounds.refine`)."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..errors import SpnError
from ..project.history import rollback
from ..project.kinds import round_labels
from .line_plot import LinePlot
from .napari_adapter import adding_unselected

HISTORY_COLUMNS = ("round", "parent", "mIoU", "changed", "time s")


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.3f}"


class RoundsPanel(QWidget):
    """History of the host dock's project. ``host`` is the AnnotatorWidget: its ``annotator``,
    ``current`` image, ``viewer``, ``labels_layer``, ``runs``, ``save()``, ``reload()``, ``bind_keys()``
    and ``notify()``."""

    def __init__(self, host, parent=None) -> None:
        super().__init__(parent)
        self.host = host
        self.table = QTableWidget(0, len(HISTORY_COLUMNS))
        self.table.setHorizontalHeaderLabels(HISTORY_COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.miou_plot = LinePlot("mIoU per round (needs ground truth)", y_range=(0.0, 1.0))
        buttons = QHBoxLayout()
        self.show_btn, self.rollback_btn = QPushButton("Show round"), QPushButton("Roll back to round")
        self.show_btn.clicked.connect(self.show_round)
        self.rollback_btn.clicked.connect(self.rollback)
        self.rollback_btn.setToolTip("make the selected round current again (disabled while a run goes on: "
                                     "the run would land on top of it)")
        buttons.addWidget(self.show_btn)
        buttons.addWidget(self.rollback_btn)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("rounds (* = current)"))
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        layout.addWidget(self.miou_plot)

    def refresh(self) -> None:
        project = self.host.annotator.project
        rows, cur = project.rounds(), project.current_round()
        self.table.setRowCount(len(rows))
        for r, e in enumerate(rows):
            m = e.get("metrics", {})
            cells = (f"{'*' if e['round'] == cur else ''}{e['round']}", "—" if e["parent"] is None else e["parent"],
                     _fmt(m.get("miou")), _fmt(m.get("changed")), f"{e.get('seconds', 0):.0f}")
            for c, v in enumerate(cells):
                item = QTableWidgetItem(str(v))
                item.setData(Qt.ItemDataRole.UserRole, e["round"])
                self.table.setItem(r, c, item)
        self.miou_plot.set_points([e["round"] for e in rows], [e.get("metrics", {}).get("miou") for e in rows])

    def set_busy(self, busy: bool) -> None:
        """A run goes on: rolling back is disabled (showing a round stays)."""
        self.rollback_btn.setEnabled(not busy)

    def show_current(self) -> None:
        """Select the current round's row and scroll the table to it."""
        cur = self.host.annotator.project.current_round()
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) == cur:
                self.table.selectRow(r)
                self.table.scrollToItem(self.table.item(r, 0))
                return

    def selected_round(self) -> int | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            self.host.notify("select a round in the table first")
            return None
        return int(self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole))

    def show_round(self) -> None:
        """Add the selected round's labels of the shown image as a read-only layer to compare."""
        r = self.selected_round()
        if r is None or self.host.current is None:
            return
        data = self.host.annotator.project.read(round_labels(r), self.host.current)
        viewer, name = self.host.viewer, f"round {r}"
        if name in viewer.layers:
            viewer.layers[name].data = data
        else:
            labels = self.host.labels_layer
            with adding_unselected(viewer):  # the labels stay selected: the dock's keys stay the dock's
                viewer.add_labels(data, name=name, opacity=0.5, colormap=labels.colormap, features=labels.features)
            self.host.bind_keys(viewer.layers[name])
        viewer.layers[name].editable = False

    def rollback(self) -> None:
        if self.host.runs.running():
            self.host.notify("a run is going on: roll back when it has finished, or Cancel it first", error=True)
            return
        r = self.selected_round()
        if r is None:
            return
        self.host.save()
        try:
            rollback(self.host.annotator.project, r)
        except SpnError as exc:
            self.host.notify(str(exc), error=True)
            return
        self.host.reload(labels_only=True)
