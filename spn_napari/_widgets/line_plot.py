"""A small line plot drawn with QPainter: the dock's live training loss and per-round mIoU.

Plain Qt on purpose: two short curves do not justify a plotting dependency (matplotlib's Qt
canvas or pyqtgraph) in every annotator's install, and a QPainter redraw costs well under a
millisecond, so the plot never holds up the event loop while a child process trains.
"""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

MARGIN_LEFT, MARGIN = 44, 6
LINE_COLOR = QColor(80, 170, 255)


class LinePlot(QWidget):
    """One series of (x, y) points with a title and the y range written at the axis."""

    def __init__(self, title: str, *, y_range: tuple[float, float] | None = None, parent=None) -> None:
        super().__init__(parent)
        self.title, self.fixed_range = title, y_range
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_points(self, xs, ys) -> None:
        """Replace the series (points with a non-finite y are left out)."""
        pts = [(float(x), float(y)) for x, y in zip(xs, ys) if y is not None and math.isfinite(float(y))]
        self.xs, self.ys = [p[0] for p in pts], [p[1] for p in pts]
        self.update()

    def extend(self, points) -> None:
        """Add (x, y) points (non-finite y left out) and repaint once."""
        for x, y in points:
            if y is not None and math.isfinite(float(y)):
                self.xs.append(float(x))
                self.ys.append(float(y))
        self.update()

    def clear(self) -> None:
        self.set_points([], [])

    def y_range(self) -> tuple[float, float]:
        if self.fixed_range is not None:
            return self.fixed_range
        if not self.ys:
            return 0.0, 1.0
        lo, hi = min(self.ys), max(self.ys)
        return (lo - 0.5, hi + 0.5) if hi == lo else (lo, hi)

    def plot_rect(self) -> QRectF:
        """Where the curve is drawn, in widget coordinates (below the title, right of the labels)."""
        return QRectF(MARGIN_LEFT, MARGIN + 14, self.width() - MARGIN_LEFT - MARGIN,
                      self.height() - 2 * MARGIN - 14)

    def to_widget(self, x: float, y: float) -> QPointF:
        """A data point's position in widget coordinates."""
        r = self.plot_rect()
        x0, x1 = (min(self.xs), max(self.xs)) if self.xs else (0.0, 1.0)
        y0, y1 = self.y_range()
        fx = 0.5 if x1 == x0 else (x - x0) / (x1 - x0)
        fy = (y - y0) / (y1 - y0)
        return QPointF(r.left() + fx * r.width(), r.bottom() - fy * r.height())

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        fg = self.palette().windowText().color()
        r = self.plot_rect()
        p.setPen(QPen(fg))
        p.drawText(QRectF(0, 0, self.width(), MARGIN + 14), Qt.AlignmentFlag.AlignCenter, self.title)
        p.setPen(QPen(QColor(fg.red(), fg.green(), fg.blue(), 90)))
        p.drawRect(r)
        y0, y1 = self.y_range()
        p.setPen(QPen(fg))
        p.drawText(QRectF(0, r.top() - 6, MARGIN_LEFT - 4, 14), Qt.AlignmentFlag.AlignRight, f"{y1:.3g}")
        p.drawText(QRectF(0, r.bottom() - 8, MARGIN_LEFT - 4, 14), Qt.AlignmentFlag.AlignRight, f"{y0:.3g}")
        if self.xs:
            pen = QPen(LINE_COLOR)
            pen.setWidthF(2.0)
            p.setPen(pen)
            pts = [self.to_widget(x, y) for x, y in zip(self.xs, self.ys)]
            if len(pts) > 1:
                p.drawPolyline(QPolygonF(pts))
            p.setBrush(LINE_COLOR)
            for q in pts if len(pts) <= 30 else pts[-1:]:
                p.drawEllipse(q, 2.5, 2.5)
        p.end()
