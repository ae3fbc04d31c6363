"""One progress bar per CLI job (spn_napari.job_progress): hand-made event streams with a fake
clock, whose phases, fractions and times are known."""

from __future__ import annotations

import numpy as np
import pytest

from spn_napari.events import Event
from spn_napari.job_progress import PLANS, JobProgress, format_eta
from spn_napari.jobs import STEPS


def feed(step, timed_events):
    """[(now, Event)] through a fresh JobProgress(step) -> [Shown], one per event."""
    jp = JobProgress(step)
    return [jp.update(ev, now) for now, ev in timed_events]


def photos(event, n, t0, dt):
    """``n`` per-photo events, one every ``dt`` seconds after ``t0``: [(now, Event)]."""
    return [(t0 + k * dt, Event(event, k, n)) for k in range(1, n + 1)]


def training(epochs, per_epoch, t0, dt, *, propagate=None, epochs_known=True):
    """A trainer's events: 'start', a 'step' (with its loss) every ``dt`` s and an 'epoch' after each
    epoch's steps."""
    total = epochs * per_epoch
    data = {"epochs": epochs} if epochs_known else {}
    if propagate is not None:
        data["propagate"] = propagate
    out, now = [(t0, Event("start", 0, total, data))], t0
    for e in range(epochs):
        for s in range(per_epoch):
            now += dt
            n = e * per_epoch + s + 1
            out.append((now, Event("step", n, total, {"loss": 1.0 / n, "epoch": e + 1})))
        out.append((now, Event("epoch", e + 1, epochs, {"loss": 0.5})))
    return out


def fractions(shown):
    return [s.fraction for s in shown]


def is_monotone(xs):
    return all(b >= a for a, b in zip(xs, xs[1:]))


def test_every_dock_step_has_a_plan():
    assert set(STEPS) | {"init"} <= set(PLANS)


def test_phases_are_named_in_words_with_their_own_counts():
    round_events = (photos("features", 355, 0.0, 1.0) + training(9, 400 // 9 + 1, 400.0, 0.5)
                    + photos("image", 236, 700.0, 0.2))
    shown = feed("round", round_events)
    texts = [s.text for s in shown]
    assert "encoder features 40/355 photos" in texts
    assert "labelling 120/236 photos" in texts
    step120 = next(s for (_, ev), s in zip(round_events, shown) if ev.event == "step" and ev.step == 120)
    assert step120.text == "training epoch 3/9 · step 120/405 · loss 0.008"
    assert feed("superpixels", photos("image", 355, 0, 1))[11].text == "superpixels 12/355 photos"
    assert feed("init", photos("image", 355, 0, 1))[19].text == "importing 20/355 images"
    pseudo = feed("pseudo-labels", photos("image", 10, 0, 1) + photos("descriptors", 10, 10, 1))
    assert pseudo[12].text == "superpixel descriptors 3/10 photos"
    table = feed("round", training(1, 4, 0, 1) + photos("image", 10, 5, 1) + photos("table", 236, 20, 1))
    assert table[-1].text == "reading the labels 236/236 photos"
    assert feed("round", [(0.0, Event("done", 1, 1))])[-1] == feed("superpixels", [(0.0, Event("done", 3, 3))])[-1]


def test_the_loss_stays_shown_through_the_epoch_events():
    shown = feed("train-spn", training(2, 5, 0.0, 1.0))
    epoch_end = shown[6]  # start, five steps, then epoch 1's 'epoch' event
    assert epoch_end.text == shown[5].text == "training epoch 1/2 · step 5/10 · loss 0.200"
    assert shown[7].text.startswith("training epoch 2/2 · step 6/10 · loss 0.167")


def test_training_without_an_epoch_count_still_reads_in_words():
    shown = feed("train-spn", training(2, 5, 0.0, 1.0, epochs_known=False))
    assert shown[3].text == "training epoch 1 · step 3/10 · loss 0.333"


def test_one_bar_covers_the_job_phase_by_phase():
    """(phases done + this phase's fraction) / phases: a round of training and labelling is half
    done when the training is, three quarters at half the labelling."""
    events = training(4, 100, 0.0, 0.1) + photos("image", 236, 50.0, 0.1)
    shown = dict(zip([(ev.event, ev.step) for _, ev in events], feed("round", events)))
    assert shown[("step", 200)].fraction == pytest.approx(0.25)
    assert shown[("epoch", 4)].fraction == pytest.approx(0.5)
    assert shown[("image", 118)].fraction == pytest.approx(0.75)
    assert shown[("image", 236)].fraction == pytest.approx(1.0)


def test_the_bar_never_goes_back_from_one_phase_to_the_next():
    """Each phase counts from 0 again (the old bar fell from 97 % to 0 when the round's labelling
    began); the job's fraction only grows, and 'done' fills it."""
    events = (training(3, 20, 0.0, 0.5, propagate=True) + photos("image", 30, 40.0, 0.3)
              + photos("table", 30, 55.0, 0.1) + [(59.0, Event("done", 1, 1))])
    xs = fractions(feed("round", events))
    assert is_monotone(xs) and xs[1] > 0 and xs[-1] == 1.0
    phase_ends = [xs[60 + 3], xs[60 + 3 + 30], xs[60 + 3 + 60]]  # training, labelling, the table done
    assert phase_ends == pytest.approx([1 / 3, 2 / 3, 1.0])  # the round said the table would follow
    with_features = fractions(feed("round", photos("features", 30, 0.0, 1.0) + events))
    assert is_monotone(with_features) and with_features[0] > 0 and with_features[-1] == 1.0


def test_a_skipped_phase_gives_its_share_to_the_next_ones():
    """train-spn without the feature cache (cached already): training is the whole bar. Pseudo-labels
    whose descriptors exist: labelling is half of it and 'done' jumps forward."""
    xs = fractions(feed("train-spn", training(2, 10, 0.0, 1.0)))
    assert xs[-1] == pytest.approx(1.0) and xs[11] == pytest.approx(0.5)
    xs = fractions(feed("pseudo-labels", photos("image", 10, 0.0, 1.0) + [(11.0, Event("done", 10, 10))]))
    assert xs[-2] == pytest.approx(0.5) and xs[-1] == 1.0 and is_monotone(xs)


def test_a_phase_that_was_not_expected_takes_what_is_left():
    """The round said nothing of the live head's table (or an older engine): the table still reads
    in words and the bar holds where it was, never back."""
    events = training(1, 10, 0.0, 1.0) + photos("image", 10, 20.0, 1.0) + photos("table", 10, 40.0, 1.0)
    shown = feed("round", events)
    assert is_monotone(fractions(shown)) and shown[-1].fraction == pytest.approx(1.0)
    assert shown[-1].text == "reading the labels 10/10 photos"


def test_a_count_that_starts_again_is_a_new_pass():
    """The live head reads the labels, then the corrections: two 'table' passes, each timed on its own."""
    events = photos("table", 10, 0.0, 1.0) + photos("table", 10, 20.0, 0.1)
    shown = feed("propagate", events)
    assert is_monotone(fractions(shown)) and shown[-1].fraction == pytest.approx(1.0)
    assert shown[15].eta_s == pytest.approx(4 * 0.1)  # the second pass's own rate, not the first's


def test_a_step_without_a_plan_learns_its_phases():
    jp = JobProgress()
    jp.update(Event("step", 3, 40, {"loss": 0.25}), 0.0)
    shown = jp.update(Event("step", 7, 40, {"loss": 0.125}), 1.0)
    assert shown.text == "training step 7/40 · loss 0.125" and shown.fraction == pytest.approx(7 / 40)
    later = jp.update(Event("image", 1, 10), 2.0)
    assert later.text == "image 1/10" and later.fraction >= shown.fraction


def error(eta, true):
    return abs(eta - true) / true


def test_the_eta_is_the_phases_own_after_a_slow_phase():
    """A slow phase (5 s a photo) then a fast one (0.1 s a step): from 10 % of each phase on, its
    ETA is within 25 % of the time it really has left. (Timed over the whole job, as before, it said
    2 s with 38 s to go, then 8,711 s with 37 s to go.)"""
    events = photos("features", 20, 0.0, 5.0) + training(4, 100, 100.0, 0.1)
    shown = feed("train-spn", events)
    end_of = {"features": 100.0, "training": 100.0 + 400 * 0.1}
    checked = 0
    for (now, ev), s in zip(events, shown):
        if ev.event not in ("features", "step"):
            continue
        phase = "features" if ev.event == "features" else "training"
        if ev.step < 0.1 * ev.total:
            assert s.eta_s is None
        elif ev.step < ev.total:
            assert error(s.eta_s, end_of[phase] - now) < 0.25, (ev, s)
            checked += 1
    assert checked > 350
    assert "ETA" in shown[200].line() and "ETA" not in shown[0].line()


def test_the_eta_holds_on_a_phase_with_uneven_steps():
    """Steps of 0.9-1.1 s: the ETA from 10 % of the phase on is within 25 % of the real time left."""
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(0.9, 1.1, 300))
    events = [(float(t), Event("image", k, 300)) for k, t in enumerate(times, 1)]
    for (now, ev), s in zip(events, feed("pseudo-labels", events)):
        if 30 <= ev.step < 300:
            assert error(s.eta_s, times[-1] - now) < 0.25, (ev, s)


def test_a_resumed_training_is_timed_from_the_resume():
    """The steps before a 'resume' ran in another process: the rate counts from the resume."""
    events = [(0.0, Event("start", 0, 400, {"epochs": 4})), (1.0, Event("resume", 200, 400, {"epoch": 2}))]
    events += [(1.0 + k, Event("step", 200 + k, 400, {"loss": 0.5, "epoch": 3})) for k in range(1, 101)]
    shown = feed("train-spn", events)
    assert shown[1].text == "training epoch 3/4 · step 200/400" and shown[1].fraction == pytest.approx(0.5)
    assert error(shown[-1].eta_s, 100.0) < 0.25


def test_eta_words():
    assert [format_eta(s) for s in (12.4, 99, 250, 7500)] == ["ETA 12 s", "ETA 99 s", "ETA 4 min 10 s",
                                                             "ETA 2 h 5 min"]
