"""The order suggestions are checked in (spn_napari.review.suggest.by_photo): a photo's suggestions
together, the best photo first, in passes of a window of rows; the dock's queue and the simulated
person follow it, over re-rankings and undo."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from spn_napari.errors import SpnError
from spn_napari.project.store import Project
from spn_napari.review import simulate as simulate_mod
from spn_napari.review import suggest as suggest_mod
from spn_napari.review.suggest import SuggestionQueue, by_photo

# (image, superpixel, current, proposed, score, pixels), best first
RANKED = np.array([[1, 10, 1, 2, 0.9, 50], [2, 20, 1, 3, 0.8, 40], [1, 11, 2, 1, 0.7, 30], [3, 30, 1, 2, 0.6, 60],
                   [2, 21, 3, 1, 0.5, 20], [1, 12, 1, 3, 0.4, 10], [3, 31, 2, 3, 0.3, 70], [2, 22, 1, 2, 0.2, 80]],
                  np.float64)


def _pairs(rows) -> list[tuple[int, int]]:
    return [(int(r[0]), int(r[1])) for r in rows]


@pytest.mark.parametrize("window, taken, want", [
    # one pass over the best 5: photo 1 (best row), its 11 among them; photo 2's 20, 21; photo 3's 30;
    # the next pass: what is left, best photo first
    (5, [], [(1, 10), (1, 11), (2, 20), (2, 21), (3, 30), (1, 12), (3, 31), (2, 22)]),
    # a window as wide as the ranking: every photo whole, in the order of its best row
    (100, [], [(1, 10), (1, 11), (1, 12), (2, 20), (2, 21), (2, 22), (3, 30), (3, 31)]),
    # a window of one: the ranking as it is
    (1, [], [(1, 10), (2, 20), (1, 11), (3, 30), (2, 21), (1, 12), (3, 31), (2, 22)]),
    # two checks on photo 1, then 20: the pass is on photo 2 with two rows left to it, photo 1 finished
    # (its 12 waits for the next pass, though it ranks above 31 and 22)
    (5, [(1, 10), (1, 11), (2, 20)], [(2, 21), (3, 30), (1, 12), (3, 31), (2, 22)]),
    # a pass just ended: the next starts from the best rows left, every photo open; 31 and 22 fall
    # outside its window of 3, into the pass after it
    (3, [(1, 10), (1, 11), (2, 20)], [(3, 30), (2, 21), (1, 12), (3, 31), (2, 22)]),
])
def test_a_hand_made_ranking_comes_out_photo_by_photo(window, taken, want):
    got = by_photo(RANKED, taken, window=window)
    assert _pairs(got) == want
    for row in got:  # whole rows, moved together
        assert any((row == r).all() for r in RANKED)


def test_the_photo_in_progress_goes_on_first_after_a_re_ranking():
    """Re-ranked with photo 3's rows on top, the pass stays on photo 2 (the last checked) for its
    rows among the three best left to the pass (22, not 21); photo 1, finished, waits for the next
    pass, though its 12 ranks second now."""
    rows = RANKED.copy()
    rows[:, 4] = [0.1, 0.5, 0.2, 0.99, 0.05, 0.98, 0.97, 0.3]  # photo 3 and 1's 12 on top now
    rows = rows[np.argsort(-rows[:, 4], kind="stable")]
    got = by_photo(rows, [(1, 10), (2, 20)], window=5)
    assert _pairs(got) == [(2, 22), (3, 30), (3, 31), (1, 12), (1, 11), (2, 21)]


def test_a_bad_window_is_refused():
    with pytest.raises(SpnError, match="window 0"):
        by_photo(RANKED, window=0)


def _fake_queue(monkeypatch, rankings, window):
    """A SuggestionQueue over ``rankings`` (each call to ranked_rows gets the next, the last one again:
    a re-ranking after each relabelling), on a stand-in project that only names its photos."""
    calls = iter(rankings)
    last = [rankings[0]]

    def ranking(project, limit=None):
        last[0] = next(calls, last[0])
        return last[0]

    monkeypatch.setattr(suggest_mod, "ranked_rows", ranking)
    project = SimpleNamespace(images=[SimpleNamespace(name=f"photo{i}") for i in range(100)])
    return SuggestionQueue(project, window=window)


def _random_ranking(rng, photos=12, per_photo=9) -> np.ndarray:
    rows = np.array([[i, s, 1, 2, rng.random(), 10] for i in range(photos) for s in range(per_photo)], np.float64)
    return rows[np.argsort(-rows[:, 4], kind="stable")]


def _passes_never_return(seen: list[tuple[int, int]], window: int) -> None:
    for start in range(0, len(seen), window):
        photos = [i for i, _ in seen[start:start + window]]
        runs = [p for k, p in enumerate(photos) if k == 0 or photos[k - 1] != p]
        assert len(runs) == len(set(runs)), f"pass at {start} came back to a photo: {photos}"


@pytest.mark.parametrize("window", [7, 30, 1000])
def test_the_queue_never_returns_to_a_finished_photo_across_re_rankings(monkeypatch, window):
    rng = np.random.default_rng(window)
    rankings = [_random_ranking(rng) for _ in range(200)]  # a new ranking at each re-rank
    queue = _fake_queue(monkeypatch, rankings, window)
    seen, s = [], queue.next()
    while s is not None:
        if len(seen) % 3 == 1:
            queue.answer_current(s.proposed, save=lambda s, v: None)
        seen.append((s.image, s.superpixel))
        queue.rerank()  # the live head relabelled: the shown one stays
        assert (queue.current.image, queue.current.superpixel) == seen[-1]
        s = queue.next()
    assert len(seen) == len(set(seen)) == len(rankings[0])  # each checked once
    _passes_never_return(seen, window)
    assert queue.answers == queue.clicks == len(range(1, len(seen), 3))


def test_without_re_ranking_the_queue_is_by_photo_s_order(monkeypatch):
    rows = _random_ranking(np.random.default_rng(1))
    queue = _fake_queue(monkeypatch, [rows], 20)
    seen = []
    while (s := queue.next()) is not None:
        seen.append((s.image, s.superpixel))
    assert seen == _pairs(by_photo(rows, window=20))


def test_undo_brings_the_answer_back_as_current_and_the_photo_goes_on(monkeypatch):
    queue = _fake_queue(monkeypatch, [RANKED], 5)
    order = _pairs(by_photo(RANKED, window=5))
    a = queue.next()
    queue.answer_current(a.proposed, save=lambda s, v: None)  # a click
    b = queue.next()
    queue.answer_current(b.current, save=lambda s, v: None)  # a look; then photo 2
    c = queue.next()
    assert [(x.image, x.superpixel) for x in (a, b, c)] == order[:3] and c.image != b.image
    assert queue.undo() == b and queue.current == b and (queue.clicks, queue.looks) == (1, 0)
    assert queue.next() == c  # b passed unanswered (a skip), on to the one shown before the undo
    assert queue.undo() == a and queue.current == a and queue.answers == 0
    assert queue.undo() is None
    queue.rerank()  # a current again; the pass (two checks: b, a) goes on with the best 3 rows left
    rest = []
    while (s := queue.next()) is not None:
        rest.append((s.image, s.superpixel))
    assert rest == [(2, 20), (2, 21), (3, 30), (1, 12), (3, 31), (2, 22)]


def test_the_simulated_person_takes_the_queue_s_order(labelled_project, monkeypatch):
    """_check_suggestions answers the first suggestions of the dock's queue, in its order."""
    p = Project(labelled_project.root)
    queue = SuggestionQueue(p)
    shown = []
    while (s := queue.next()) is not None and len(shown) < 40:
        shown.append((s.image, s.superpixel))
    saved = []
    monkeypatch.setattr(simulate_mod, "answer", lambda project, i, given: saved.extend((i, s) for s in given))
    clicks, looks = simulate_mod._check_suggestions(p, 5)
    assert clicks == 5 and set(saved) <= set(shown[:clicks + looks])
    assert len(saved) >= clicks


class _StaticHead:
    """A live head whose ranking does not change but for the person's answers."""

    def __init__(self, rows):
        self.rows = rows

    def ranking(self):
        return self.rows

    def set_person(self, image, superpixel, value):
        keep = ~((self.rows[:, 0] == image) & (self.rows[:, 1] == superpixel))
        self.rows = self.rows[keep]


def test_the_simulated_person_s_passes_go_on_over_refits():
    """Batches of live_batch with one ``taken`` list check what one queue shows, in its order;
    a superpixel without truth is looked at once and left out after."""
    rows = _random_ranking(np.random.default_rng(2))
    head, skipped, taken = _StaticHead(rows), set(), []
    no_truth = {(int(rows[5, 0]), int(rows[5, 1]))}
    truth = lambda i, s: 255 if (i, s) in no_truth else 9  # noqa: E731 every answer a click
    checked = []
    while True:
        answers, clicks, looks = simulate_mod.live_batch(head, truth, 100, 4, skipped, taken=taken)
        if not answers:
            break
        assert clicks <= 4
        checked += [(i, s) for i, given in answers.items() for s in given]
    assert taken == _pairs(by_photo(rows, window=suggest_mod.WINDOW))
    assert skipped == no_truth and set(checked) == set(taken) - no_truth
