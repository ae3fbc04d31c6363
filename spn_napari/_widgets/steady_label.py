"""A text line for what changes while the window is in use (status, a job's progress)."""

from __future__ import annotations

from qtpy.QtCore import QEvent
from qtpy.QtWidgets import QLabel, QSizePolicy, QWidget


class SteadyLabel(QWidget):
    """A label of a fixed number of lines whose width follows its layout, never its text.

    A QLabel in a layout asks for a new layout on every new text; in a napari window that request
    travels up through the dock to the main window and the layer controls, each step another frame
    of the whole window (~10-30 ms under software OpenGL): five frames when a job started. Here the
    QLabel sits in a box without a layout, so a new text is one repaint of the label. What does not
    fit is cut; the whole text is the tooltip."""

    def __init__(self, text: str = "", lines: int = 1, parent=None) -> None:
        super().__init__(parent)
        self._lines, self._label = lines, QLabel(self)
        self._label.setWordWrap(lines > 1)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self._fit_height()
        self.setText(text)

    def _fit_height(self) -> None:
        """Height for the label's lines in its font, which napari's style sheet sets only when
        the window is shown (a font or style change: the height again)."""
        self._label.ensurePolished()
        margins = self._label.contentsMargins()
        self.setFixedHeight(self._lines * self._label.fontMetrics().lineSpacing() + margins.top() + margins.bottom())

    def text(self) -> str:
        return self._label.text()

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        self._label.setText(text)
        self.setToolTip(text)

    def resizeEvent(self, event) -> None:  # noqa: N802
        self._label.setGeometry(self.rect())
        super().resizeEvent(event)

    def showEvent(self, event) -> None:  # noqa: N802
        self._fit_height()
        super().showEvent(event)

    def changeEvent(self, event) -> None:  # noqa: N802
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._fit_height()
        super().changeEvent(event)
