"""The dock's image list: a Qt table model over a project's images that costs the same per action
at 20,000 images as at 200.

Why a model and not a QTableWidget: a QTableWidget holds an item object per cell, so showing the
list builds 4 × n of them, and refreshing it after an Accept rebuilt them all (0.2 s at 20,000
images on a 2-core machine; 3 ms at 200). This model holds its columns as plain lists and one
array, read in bulk once per project open or reload
(:meth:`spn_napari.review.annotator.Annotator.columns`); the view asks only for the cells it draws. An
Accept or Reject changes one image's status: :meth:`ImageListModel.update_row` re-reads that
status and signals that one cell.

Sorting happens in the model: a numpy argsort over the column gives a permutation (row → image
index, and its inverse image → row), so sorting 20,000 rows by confidence is one C-level sort.
A QSortFilterProxyModel would call its Python ``lessThan`` O(n log n) times instead. Sorting is
stable (ties keep image order), and images without a confidence (no round yet) sort last in
either order. A sort is not redone when a status changes (the rows would jump away under the
person's click); it is redone when the person sorts again and when the project is reloaded.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt

COLUMNS = ("image", "status", "tags", "confidence")
_KEYS = ("name", "review", "tags", "confidence")  # Annotator.columns() key of each column
STATUS = COLUMNS.index("status")
CONFIDENCE = COLUMNS.index("confidence")
TAGS = COLUMNS.index("tags")


class ImageListModel(QAbstractTableModel):
    """Rows are images (in sorted order); columns image, status, tags and confidence.

    The display role gives each cell's text ('—' for an unknown confidence), the tooltip role a
    tags cell's whole text (a narrow column cuts it); ``Qt.UserRole`` gives the row's image index,
    as :meth:`image_at` does."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._cols: dict = {"name": [], "review": [], "tags": [], "confidence": np.empty(0)}
        self._review: Callable[[int], str] | None = None
        self._order = np.empty(0, np.intp)  # row -> image index
        self._row = np.empty(0, np.intp)  # image index -> row
        self._sort: tuple[int, Qt.SortOrder] | None = None  # the last sort asked for, redone on load

    # ---- filling and updating --------------------------------------------------------------
    def load(self, columns: dict, review: Callable[[int], str]) -> None:
        """Show ``columns`` (as :meth:`Annotator.columns` returns them); ``review(i)`` re-reads
        image i's status for :meth:`update_row`. The last sort is applied again."""
        self.beginResetModel()
        self._cols = {"name": list(columns["name"]), "review": list(columns["review"]),
                      "tags": list(columns["tags"]), "confidence": np.asarray(columns["confidence"], np.float64)}
        self._review = review
        n = len(self._cols["name"])
        self._set_order(np.arange(n) if self._sort is None or not n else self._sorted(*self._sort))
        self.endResetModel()

    def update_row(self, i: int) -> None:
        """Image i's status changed (Accept, Reject): re-read it and signal that one cell."""
        self._cols["review"][i] = self._review(i)
        index = self.index(int(self._row[i]), STATUS)
        self.dataChanged.emit(index, index)

    # ---- rows and images ---------------------------------------------------------------------
    def image_at(self, row: int) -> int:
        """The image index shown in ``row``."""
        return int(self._order[row])

    def row_of(self, i: int) -> int:
        """The row that shows image i."""
        return int(self._row[i])

    def _set_order(self, order: np.ndarray) -> None:
        self._order = np.asarray(order, np.intp)
        self._row = np.empty_like(self._order)
        self._row[self._order] = np.arange(len(self._order))

    # ---- Qt's model interface ----------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self._order)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return super().headerData(section, orientation, role)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        i = int(self._order[index.row()])
        if role == Qt.ItemDataRole.UserRole:
            return i
        if role == Qt.ItemDataRole.ToolTipRole and index.column() == TAGS:
            return self._cols["tags"][i] or "no tags"
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if index.column() == CONFIDENCE:
            c = self._cols["confidence"][i]
            return "—" if np.isnan(c) else f"{c:.3f}"
        return self._cols[_KEYS[index.column()]][i]

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        """Sort the rows by ``column`` (the view calls this when its header is clicked); the
        selection and current row follow their images."""
        self._sort = (column, order)
        if not len(self._order):
            return
        self.layoutAboutToBeChanged.emit()
        old = self.persistentIndexList()
        images = [int(self._order[ix.row()]) for ix in old]
        self._set_order(self._sorted(column, order))
        self.changePersistentIndexList(old, [self.index(int(self._row[i]), ix.column())
                                             for i, ix in zip(images, old)])
        self.layoutChanged.emit()

    def _sorted(self, column: int, order) -> np.ndarray:
        """The permutation row → image for ``column`` in ``order``: a stable argsort of the
        column's sort keys (text as the rank of its value; confidence as is, NaN last)."""
        if column == CONFIDENCE:
            key = self._cols["confidence"]
        else:
            values = np.asarray(self._cols[_KEYS[column]], dtype=str)
            key = np.unique(values, return_inverse=True)[1].astype(np.float64)
        if order == Qt.SortOrder.DescendingOrder:
            key = -key  # NaN stays NaN: unknown confidences last either way
        return np.argsort(key, kind="stable")
