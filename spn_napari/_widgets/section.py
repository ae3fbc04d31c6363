"""A collapsible part of the dock: a header button and the panel it shows or hides.

Why: the dock holds the image list, the correction tools and three panels (runs, Segment, rounds).
Stacked open they left the image list about four rows at 1600×1000; folded, the list gets the
height, and a panel opens with one click (the run panel opens itself when a job starts). Sections
that share a parent widget fold each other: one is open at a time, so the dock never grows taller
than the screen."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QSizePolicy, QToolButton, QVBoxLayout, QWidget


class Section(QWidget):
    """``title`` over ``content``; ``expanded`` says whether the content shows at first."""

    def __init__(self, title: str, content: QWidget, *, expanded: bool = False, parent=None) -> None:
        super().__init__(parent)
        self.content = content
        self.header = QToolButton(text=title, checkable=True)
        self.header.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.header.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.header.setStyleSheet("QToolButton { border: none; font-weight: bold; text-align: left; }")
        self.header.toggled.connect(self.set_expanded)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.header)
        layout.addWidget(content)
        self.header.setChecked(expanded)
        self.set_expanded(expanded)

    def set_expanded(self, on: bool) -> None:
        """Show (or fold away) the content; the header's arrow follows."""
        if self.header.isChecked() != on:
            self.header.setChecked(on)  # calls back here once more, with the same value
            return
        if on and self.parentWidget() is not None:  # the others first: two open at once could grow the window
            for other in self.parentWidget().findChildren(Section):
                if other is not self and other.expanded():
                    other.set_expanded(False)
        self.header.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.content.setVisible(on)

    def expanded(self) -> bool:
        return self.header.isChecked()
