"""The dock's *Check suggestions* mode: the superpixels most worth a check, one after another,
across every unreviewed image (:class:`spn_napari.review.suggest.SuggestionQueue`).

Each suggestion shows its image, outlines the superpixel (layer "Suggestion") and chooses the
proposed class in the class box. Keys while checking: **Y** accept the proposal, **1**–**9** the
photo's n-th tag instead, **C** mark it correct as labelled, **S** skip, **Backspace** take the
last answer back. Each answer is saved at
once as a partial correction; a counter shows answers, clicks and looks."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QPushButton, QVBoxLayout, QWidget

from ..errors import SpnError
from ..review.suggest import SuggestionQueue
from .napari_adapter import adding_unselected
from .steady_label import SteadyLabel

LAYER = "Suggestion"
READ_AHEAD_MS = 150  # after the suggestion's frame is out (~50-100 ms); a person takes far longer to answer
WRITE_MS = 100  # an answer is written this long after it is shown answered: in the person's look, not their wait
# The suggestion's outline: white on its edge, black just inside (no hue: it reads on every class
# colour and every photo, light or dark); 0 is transparent.
OUTLINE = {"name": "spn suggestion", "controls": [0.0, 0.5, 1.0],
           "colors": [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]}


def inner_outline(mask: np.ndarray) -> np.ndarray:
    """(H, W) uint8: the pixels of ``mask`` that touch a pixel outside it (or the image's edge)."""
    m = np.pad(mask, 1)
    inside = m[1:-1, 1:-1]
    touches = ~(m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:])
    return (inside & touches).astype(np.uint8)


def two_tone_outline(mask: np.ndarray) -> np.ndarray:
    """(H, W) uint8 for :data:`OUTLINE`: 2 on ``mask``'s edge pixels (white), 1 on the ring just
    inside them (black), 0 elsewhere."""
    edge = inner_outline(mask)
    return 2 * edge + inner_outline(mask & ~edge.astype(bool))


class SuggestionsPanel(QWidget):
    """``host`` is the AnnotatorWidget: its ``annotator``, ``viewer``, ``show_image()``,
    ``choose_class()``, ``photo_layers``, ``save()``, ``refresh_shown_labels()`` and ``notify()``."""

    def __init__(self, host, parent=None) -> None:
        super().__init__(parent)
        self.host = host
        self.queue: SuggestionQueue | None = None
        self.button = QPushButton("Check suggestions")
        self.button.setCheckable(True)
        self.button.setToolTip("go through the superpixels most likely wrong, over all unreviewed images: "
                               "Y accept the proposal, 1–9 another tag, C correct as it is, S skip, "
                               "Backspace undo the last answer")
        self.button.toggled.connect(self._toggled)
        self.counter = SteadyLabel("answers 0 · clicks 0 · looks 0", lines=2)
        self._ahead = QTimer(self, singleShot=True, interval=READ_AHEAD_MS)
        self._ahead.timeout.connect(self._read_ahead)
        self._write = QTimer(self, singleShot=True, interval=WRITE_MS)
        self._write.timeout.connect(host.save)  # the view's answers with the person's strokes
        layout = QVBoxLayout(self)  # the counter under the button: the dock's whole width for its two lines
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.button)
        layout.addWidget(self.counter)

    @property
    def active(self) -> bool:
        return self.queue is not None

    def _toggled(self, on: bool) -> None:
        if on:
            self.start()
        else:
            self.stop()

    def start(self) -> bool:
        """Build the queue from the open project and show the first suggestion."""
        host = self.host
        if host.annotator is None:
            host.notify("open a project first")
            self.button.setChecked(False)
            return False
        host.save()  # the queue reads the corrections as saved
        try:
            self.queue = SuggestionQueue(host.annotator.project)
        except SpnError as exc:
            host.notify(str(exc), error=True)
            self.button.setChecked(False)
            return False
        if not self.button.isChecked():
            self.button.blockSignals(True)
            self.button.setChecked(True)
            self.button.blockSignals(False)
        self._count()
        self.show_next()
        return True

    def stop(self) -> None:
        self.queue = None
        self.counter.setText(self.counter.text().split("\n")[0])  # the counts stay; a note of the pass goes
        self._ahead.stop()
        self._write.stop()
        self.host.save()  # the answers not written yet
        if LAYER in self.host.viewer.layers:
            self.host.viewer.layers.remove(LAYER)
        if self.button.isChecked():
            self.button.blockSignals(True)
            self.button.setChecked(False)
            self.button.blockSignals(False)

    def show_next(self) -> None:
        s = self.queue.next()
        if s is None:
            self.host.notify("no more suggestions: run a refinement round for new ones")
            self.stop()
            return
        self._show(s)

    def _show(self, s) -> None:
        host = self.host
        if host.current != s.image:
            host.show_image(s.image, klass=s.proposed)  # the proposal's evidence shown at once
        else:
            host.choose_class(s.proposed)
        sp = host.annotator.view(s.image).superpixels
        outline = two_tone_outline(sp == s.superpixel)  # (H, W)
        viewer = host.viewer
        if LAYER in viewer.layers:
            host.photo_layers.set_data(LAYER, outline)
        else:
            with adding_unselected(viewer):  # the labels stay selected: the person paints on them
                viewer.add_image(outline, name=LAYER, colormap=OUTLINE, contrast_limits=(0, 2),
                                 blending="translucent", metadata={"spn_project": str(host.annotator.project.root)})
        now, proposed = s.names(host.annotator.project)
        host.status.setText(f"{s.name}, superpixel {s.superpixel}: {now} → {proposed}?  "
                            f"Y yes · 1–9 another tag · C correct · S skip")
        self._ahead.start()  # after this frame, while the person looks: the next photo read ahead

    def _read_ahead(self) -> None:
        """Read the next suggestion's photo into the dock's view cache, so that answering shows it
        without the store reads (photo, superpixels, evidence: ~10-20 ms) in the person's wait."""
        nxt = self.queue.peek() if self.queue is not None else None
        if nxt is not None and self.host.annotator is not None:
            try:
                self.host.annotator.view(nxt.image)
            except (OSError, SpnError):
                pass  # only the time is lost: showing it reads it again and reports what fails

    def answer(self, value: int) -> None:
        """Set ``value`` for the shown suggestion in the dock's view and move on; the answer is
        written to the project :data:`WRITE_MS` later, while the person looks at the next one
        (as autosave writes strokes; any save, switch of project, round or close writes it first)."""
        if self.queue is None or self.queue.current is None:
            return
        host = self.host
        host.save()  # the person's strokes first, so the answer lands on top of them
        if host.unsaved_error:
            return  # shown: nothing is answered over edits that could not be saved
        annotator = host.annotator
        try:
            s = self.queue.answer_current(value, save=lambda s, v: annotator.answer(s.image, s.superpixel, v))
        except (OSError, SpnError) as exc:
            host.notify(f"could not take the answer: {exc} — try again", error=True)
            return
        host.refresh_shown_labels(s.image)
        self._count()
        self.show_next()
        if not self._write.isActive():
            self._write.start()

    def accept(self) -> None:
        if self.queue is not None and self.queue.current is not None:
            self.answer(self.queue.current.proposed)

    def correct(self) -> None:
        if self.queue is not None and self.queue.current is not None:
            self.answer(self.queue.current.current)

    def tag(self, n: int) -> None:
        """Answer with the photo's n-th tag (0-based), as ordered in the class box."""
        if self.queue is None or self.queue.current is None:
            return
        tags = self.host.annotator.view(self.queue.current.image).tags
        if n < len(tags):
            self.answer(tags[n] + 1)

    def undo(self) -> None:
        """Take the last answer back (Backspace): its superpixel gets its pixels from before it and
        is suggested again; the write that follows lets the live head refit without it."""
        if self.queue is None:
            return
        s = self.queue.undo()
        if s is None:
            self.host.notify("no answer to undo")
            return
        try:
            self.host.annotator.undo_answer(s.image, s.superpixel)
        except (OSError, SpnError) as exc:
            self.host.notify(f"could not undo the answer: {exc}", error=True)
            return
        self._count()
        self._show(s)
        self.host.refresh_shown_labels(s.image)
        if not self._write.isActive():
            self._write.start()

    def skip(self) -> None:
        if self.queue is not None:
            self.show_next()

    def relabelled(self, changed: int, photos: int) -> None:
        """The live head relabelled the project: rank the rest again, say what the answers changed."""
        if self.queue is None:
            return
        try:
            self.queue.rerank()
        except SpnError as exc:
            self.host.notify(str(exc), error=True)
            return
        self.note(f"your last answers changed {changed} superpixels in {photos} photos")

    def note(self, text: str) -> None:
        """Say ``text`` on the counter's second line (the status line holds the suggestion's question)."""
        if self.queue is not None:
            self._count("\n" + text)

    def _count(self, extra: str = "") -> None:
        q = self.queue
        self.counter.setText(f"answers {q.answers} · clicks {q.clicks} · looks {q.looks} · {len(q)} suggested"
                             + extra)
