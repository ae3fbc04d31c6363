"""One progress bar for a whole CLI job, read from its events: which phase runs, in words, how far
the job is overall, and when the phase will end.

A job prints the events of several engine calls one after the other (a round: the encoder's
feature cache, training, labelling, the live head's table), each counting from 0 to its own
total. :class:`JobProgress` knows each step's phases in order (:data:`PLANS`), so that one
fraction covers the job and never goes back, and it times each phase on its own: a slow first
phase says nothing about the speed of the next. Pure Python (no Qt, no torch): the dock's run
panel shows what it returns, tests feed it hand-made events and a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from .events import Event

__all__ = ["Phase", "PLANS", "PHASE_WORDS", "Shown", "JobProgress", "format_eta"]

ETA_AFTER = 0.1
"""A phase's ETA is shown once this fraction of it is done (before, its rate is mostly noise)."""


@dataclass(frozen=True)
class Phase:
    """One engine call inside a job: the ``events`` it yields, their ``counting`` subset (step of
    total of this phase; the others, such as 'epoch', only add to the words), what it does in
    ``words`` and what it counts (``unit``; empty for training, which counts steps and epochs).

    ``optional``: the step may skip it (the feature cache when the maps are cached); ``likely``:
    an optional phase that usually runs, whose share of the bar is kept for it until it is
    skipped. An unlikely one gets a share only once it starts."""

    name: str
    words: str
    events: frozenset[str]
    unit: str = "photos"
    counting: frozenset[str] | None = None  # None: all of ``events``
    optional: bool = False
    likely: bool = True

    def counts(self, event: str) -> bool:
        return event in (self.events if self.counting is None else self.counting)

    def maybe(self, likely: bool) -> Phase:
        """This phase, optional (``likely``: usually run)."""
        return Phase(self.name, self.words, self.events, self.unit, self.counting, True, likely)


FEATURES = Phase("features", "encoder features", frozenset({"features"}))
TRAINING = Phase("training", "training", frozenset({"start", "resume", "step", "epoch"}), unit="",
                 counting=frozenset({"start", "resume", "step"}))
LABELLING = Phase("labelling", "labelling", frozenset({"image"}))
DESCRIPTORS = Phase("descriptors", "superpixel descriptors", frozenset({"descriptors"}))
TABLE = Phase("table", "reading the labels", frozenset({"table"}))
SUPERPIXELS = Phase("superpixels", "superpixels", frozenset({"image"}))
IMPORT = Phase("import", "importing", frozenset({"image"}), unit="images")

PHASE_WORDS = {"features": FEATURES.words, "descriptors": DESCRIPTORS.words, "table": TABLE.words}
"""Words for the events that name their phase whatever the step (the terminal's bars use them too)."""

PLANS: dict[str, tuple[Phase, ...]] = {
    "init": (IMPORT,),
    "superpixels": (SUPERPIXELS,),
    # the first training computes the frozen encoder's maps; a retraining finds them cached
    "train-spn": (FEATURES.maybe(likely=True), TRAINING),
    # the SPN's training sides are cached by then; a new SPN has no descriptors yet
    "pseudo-labels": (FEATURES.maybe(likely=False), LABELLING, DESCRIPTORS.maybe(likely=True)),
    "cam-labels": (FEATURES.maybe(likely=False), LABELLING, DESCRIPTORS.maybe(likely=True)),
    # the features and descriptors exist by then; the table only when the parent round was propagated
    "round": (FEATURES.maybe(likely=False), TRAINING, LABELLING, DESCRIPTORS.maybe(likely=False),
              TABLE.maybe(likely=False)),
    "propagate": (DESCRIPTORS.maybe(likely=False), TABLE),
}
"""CLI step -> its phases in the order they run (the dock's steps and ``jobs.STEPS``)."""


def format_eta(seconds: float) -> str:
    """'ETA 12 s', 'ETA 4 min 10 s', 'ETA 2 h 5 min'."""
    s = max(0, round(seconds))
    if s < 100:
        return f"ETA {s} s"
    if s < 3600:
        return f"ETA {s // 60} min {s % 60} s"
    return f"ETA {s // 3600} h {s % 3600 // 60} min"


@dataclass(frozen=True)
class Shown:
    """What a job's progress looks like now: ``fraction`` of the whole job (0..1, never less than
    before), the phase in words with its counts (``text``), and the phase's seconds left
    (``eta_s``; None until :data:`ETA_AFTER` of it is done)."""

    fraction: float
    text: str
    eta_s: float | None = None

    def line(self) -> str:
        """The text with the ETA: 'labelling 120/236 photos · ETA 12 s'."""
        return self.text if self.eta_s is None else f"{self.text} · {format_eta(self.eta_s)}"


class JobProgress:
    """Follows one CLI step's events: ``JobProgress("round").update(event, now)`` -> :class:`Shown`.

    The bar: the phases still to run share what is left of it, equally; each time a phase starts
    its share is set from where the bar stands (so a skipped phase leaves its share to the ones
    after it, an unexpected one takes a share of what is left, and nothing goes back). A phase
    whose count starts again (the live head reads the labels, then the corrections) is a new pass
    of it, timed on its own. 'done' fills the bar. A step without a plan (or None) learns its
    phases from the events as they come.

    A round's 'start' event says whether the live head's table follows ("propagate"): then it
    has its share from the start.

    The ETA: the phase's rate from its own first event (a 'resume': from there) to now, times the
    steps left; ``now`` is any clock in seconds (time.monotonic in the dock).
    """

    def __init__(self, step: str | None = None) -> None:
        self.step = step
        self.plan: list[Phase] = list(PLANS.get(step or "", ()))
        self.skipped: set[int] = set()
        self.current = -1  # index into plan of the running phase
        self.base, self.share = 0.0, 1.0  # the bar at the current phase's start, and its share
        self.fraction = 0.0
        self.ref: tuple[float, int] | None = None  # (time, step) the phase's rate counts from
        self.step_no, self.total = 0, 0  # the phase's count
        self.epoch, self.epochs, self.loss = None, None, None
        self.eta_s: float | None = None
        self.last: Shown = Shown(0.0, f"{step}: starting…" if step else "starting…")

    # ---- the phases ------------------------------------------------------------------------
    def _find(self, event: str) -> int | None:
        for j in range(self.current + 1, len(self.plan)):
            if event in self.plan[j].events:
                return j
        return None

    def _counted(self, j: int) -> bool:
        p = self.plan[j]
        return j not in self.skipped and (j <= self.current or not p.optional or p.likely)

    def _expect(self, name: str) -> None:
        """The job said that phase ``name`` will run: it keeps its share of the bar."""
        for j in range(self.current + 1, len(self.plan)):
            if self.plan[j].name == name:
                self.plan[j] = self.plan[j].maybe(likely=True)

    def _enter(self, j: int, now: float, ev: Event) -> None:
        """Start phase j (skipping those between): its share of what is left of the bar."""
        self.skipped.update(range(self.current + 1, j))
        self.current = j
        self.base = self.fraction
        left = sum(self._counted(i) for i in range(j, len(self.plan)))
        self.share = (1.0 - self.base) / max(1, left)
        self.ref = (now, ev.step)
        self.step_no, self.total, self.eta_s = ev.step, ev.total, None
        self.epoch = self.loss = None

    def _phase_for(self, ev: Event) -> int:
        """The plan index of ``ev``'s phase, entering it (or a new pass of the current one) when
        it is not the running one; an event no phase expects gets a phase of its own."""
        if self.current >= 0 and ev.event in self.plan[self.current].events:
            p = self.plan[self.current]
            if not (p.counts(ev.event) and ev.step < self.step_no and ev.event != "resume"):
                return self.current
            j = self._find(ev.event)  # its count started again: the next phase, or another pass
            if j is None:
                self.plan.insert(self.current + 1, p)
                j = self.current + 1
            return j
        j = self._find(ev.event)
        if j is None:
            phase = next((p for p in (TRAINING, FEATURES, DESCRIPTORS, TABLE) if ev.event in p.events),
                         Phase(ev.event, ev.event, frozenset({ev.event}), unit=""))
            j = self.current + 1
            self.plan.insert(j, phase.maybe(likely=False))
        return j

    # ---- an event ------------------------------------------------------------------------------
    def update(self, ev: Event, now: float) -> Shown:
        """Take the job's next event, received at ``now`` (seconds), and say what to show."""
        if ev.event == "done":
            self.fraction = 1.0
            self.last = Shown(1.0, "done")
            return self.last
        if ev.event == "start" and ev.data.get("propagate"):
            self._expect("table")
        j = self._phase_for(ev)
        if j != self.current:
            self._enter(j, now, ev)
        phase = self.plan[j]
        if phase.name == "training":
            self._training(ev)
        if phase.counts(ev.event) and ev.total:
            if ev.event == "resume":
                self.ref = (now, ev.step)  # the steps before it ran in another process
            self.step_no, self.total = ev.step, ev.total
            self.eta_s = self._eta(now)
            f = min(1.0, max(0.0, ev.step / ev.total))
            self.fraction = max(self.fraction, min(1.0, self.base + self.share * f))
        self.last = Shown(self.fraction, self._words(phase), self.eta_s)
        return self.last

    def _training(self, ev: Event) -> None:
        if "epochs" in ev.data:
            self.epochs = int(ev.data["epochs"])
        if ev.event == "step":
            self.epoch = ev.data.get("epoch", self.epoch)
            if "loss" in ev.data:
                self.loss = float(ev.data["loss"])
        elif ev.event == "resume" and "epoch" in ev.data:
            self.epoch = int(ev.data["epoch"]) + 1  # the saved epochs are done: the next one runs
        elif ev.event == "start":
            self.epoch = 1

    def _eta(self, now: float) -> float | None:
        """The phase's seconds left at its own rate; None before ETA_AFTER of it is done."""
        if self.ref is None or not self.total or not ETA_AFTER * self.total <= self.step_no < self.total:
            return None  # too early to tell, or nothing left of the phase
        t0, s0 = self.ref
        if self.step_no <= s0 or now <= t0:
            return None
        return (self.total - self.step_no) * (now - t0) / (self.step_no - s0)

    def _words(self, phase: Phase) -> str:
        if phase.name == "training":
            parts = []
            if self.epoch is not None:
                parts.append(f"epoch {self.epoch}/{self.epochs}" if self.epochs else f"epoch {self.epoch}")
            if self.total:
                parts.append(f"step {self.step_no}/{self.total}")
            if self.loss is not None:
                parts.append(f"loss {self.loss:.3f}")
            return f"{phase.words} {' · '.join(parts)}".rstrip()
        if not self.total:
            return phase.words
        unit = f" {phase.unit}" if phase.unit else ""
        return f"{phase.words} {self.step_no}/{self.total}{unit}"
