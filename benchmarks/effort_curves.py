"""mIoU against clicks: fixing whole images (at random, least certain first) against checking suggestions.

    python benchmarks/effort_curves.py PROJECT [--rounds 3] [--correct-fraction 0.1] [--epochs E] [--work DIR]
        [--out benchmarks/results/effort.json] [--png docs/effort.png] [--resume] [--redraw] [--window N]

PROJECT: a project with ground truth, superpixels and pseudo-labels (e.g. runs/real_photos/project,
which ``benchmarks/real_photos.py`` leaves; any round history it has is rolled back on the copies).
The suggestion curves take the queue in the dock's order (:func:`spn_napari.review.suggest.by_photo`: a
photo's suggestions together, in passes of ``--window`` checks, default
:data:`spn_napari.review.suggest.WINDOW`; 1 is the ranking as it is). The committed curves were run on
one made with the defaults, about 20 minutes on 2 cores:
``spn-napari init runs/real_photos/project --from ../shared/data/msrc-dev --no-background``, then
``superpixels``, ``train-spn`` and ``pseudo-labels`` on it (pseudo-labels at 0.623 to 0.624 mIoU:
two such rebuilds differ a little). A curve that starts more than 0.002 from the others (a base that
differs more) is flagged under "warnings"; the goal's two curves are run on one base.
Each curve's ``--reviewed-weight-on`` is recorded (``weight_on``), and what it did (``weighting``):
the default, auto, acts as images on the whole-image curves and as pixels on the suggestion curves.
Each curve is one ``simulate`` (:mod:`spn_napari.review.simulate`) on its own copy, ``--rounds`` rounds:

- *whole images, random* and *whole images, least certain first*: ``--correct-fraction`` of the
  photos fixed whole before each round (every superpixel looked at, each wrong one clicked);
- *suggestions, same clicks*: the suggestion queue taken in its order before each round with the
  clicks the random whole-image run spent in that round as the budget;
- *suggestions, a third of the clicks*: the same with a third of them — the goal is that
  this reaches the mIoU of three whole-image rounds.

Full supervision (the same net on every mask) and the superpixel oracle (every superpixel its true
class: what clicking can reach) are drawn as lines. Writes the JSON and a PNG of the curves.
All runs take as long as ``simulate`` takes: on msrc-dev and 2 CPU cores, hours; ``--epochs``
shortens each round (the curves then say less). The JSON is written after each curve, and
``--resume`` runs only the curves it does not hold yet (a run may span several sittings); ``--again``
with ``--only`` runs the named curves again (the JSON names the ranking each suggestion curve used).
``--only`` runs the named curves alone: the two whole-image curves and full supervision are
independent, so on two cores two processes of one thread each (``SPN_NAPARI_THREADS=1``) can
run side by side into the same JSON; the suggestion curves need the random whole-image curve's
clicks, their budget. The JSON and the PNG are rewritten as each curve lands; the PNG names the
curves not run yet, and the JSON lists them under "missing". A curve's rounds are also written
under "partial" as each one ends, so a run cut short leaves the points it measured (a rerun of that
curve starts over).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from spn_napari.events import run
from spn_napari.project.store import Project
from spn_napari.review.simulate import SimulateConfig, simulate
from spn_napari.review.suggest import WEIGHTS, WINDOW
from spn_napari.rounds.refine import WEIGHT_ON, RoundConfig
from spn_napari.runtime import default_threads

from _shared import command_line, cpu_model, write_results  # benchmarks/ is on sys.path

COLOURS = {"whole images, random": (31, 119, 180), "whole images, least certain first": (255, 127, 14),
           "suggestions, same clicks": (44, 160, 44), "suggestions, a third of the clicks": (214, 39, 40),
           "live suggestions, no round": (148, 103, 189), "live suggestions, then a round": (140, 86, 75)}


def curve(result: dict) -> list[dict]:
    """Points (clicks, looks, mIoU) of one simulate result, from round 0 (no clicks); with live
    propagation each refit's row, each round's after the refits before it."""
    points = [{"clicks": 0, "looks": 0, "miou": result["start_miou"]}]
    live = result.get("live") or []
    for r in range(len(result["rounds"]) + 1):
        points += [point(row) for row in live if row["round"] == r]
        points += [point(row) for row in result["rounds"] if row["round"] == r + 1]
    return points


def point(row: dict) -> dict:
    """One round of a simulate result as a point of its curve: clicks and looks so far, mIoU."""
    return {"clicks": row["clicks"], "looks": row["looks"], "miou": row["miou"]}


def plot(res: dict, path: Path, size=(900, 560)) -> None:
    """The curves as a PNG: mIoU (y) against clicks (x), with full supervision and the oracle as lines
    where they were measured; curves not run yet are named as such, and a curve run with a
    --reviewed-weight-on that acts otherwise than the default's is named with it."""
    w, h = size
    left, right, top, bottom = 70, 260, 30, 60
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    xmax = max(p["clicks"] for c in res["curves"].values() for p in c) or 1
    ys = [p["miou"] for c in res["curves"].values() for p in c] + [
        v for v in (res.get("full_supervision_miou"), res.get("superpixel_oracle_miou")) if v]
    ylo, yhi = max(0.0, min(ys) - 0.05), min(1.0, max(ys) + 0.03)
    X = lambda v: left + (w - left - right) * v / xmax  # noqa: E731
    Y = lambda v: h - bottom - (h - top - bottom) * (v - ylo) / (yhi - ylo)  # noqa: E731
    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for k in range(6):
        v = ylo + (yhi - ylo) * k / 5
        d.text((8, Y(v) - 6), f"{v:.2f}", fill="black")
        xv = xmax * k / 5
        d.text((X(xv) - 12, h - bottom + 6), f"{xv:.0f}", fill="black")
    d.text(((w - right) // 2 - 20, h - 25), "clicks", fill="black")
    d.text((8, 8), "mIoU", fill="black")
    for name, value, colour in (("full supervision", res.get("full_supervision_miou"), (120, 120, 120)),
                                ("superpixel oracle", res.get("superpixel_oracle_miou"), (0, 0, 0))):
        if value is not None and ylo <= value <= yhi:
            for x0 in range(left, w - right, 12):
                d.line([(x0, Y(value)), (min(x0 + 6, w - right), Y(value))], fill=colour, width=2)
            d.text((left + 6, Y(value) - 14), f"{name} {value:.3f}", fill=colour)
    for k, (name, points) in enumerate(res["curves"].items()):
        colour = COLOURS.get(name, (0, 0, 0))
        xy = [(X(p["clicks"]), Y(p["miou"])) for p in points]
        d.line(xy, fill=colour, width=3)
        for x, y in xy:
            d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour)
        held = res.get("weight_on", {}).get(name)  # a curve whose rounds weighed otherwise than the default would
        odd = held and effective_weighting(name, held) != effective_weighting(name, RoundConfig.reviewed_weight_on)
        d.text((w - right + 8, top + 18 * k), f"{name} ({held})" if odd else name, fill=colour)
    for k, name in enumerate(res.get("missing", []), start=len(res["curves"]) + 1):
        d.text((w - right + 8, top + 18 * k), f"{name}: not run", fill=(150, 150, 150))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


CURVES = ("whole images, random", "whole images, least certain first", "suggestions, a third of the clicks",
          "suggestions, same clicks", "full supervision", "live suggestions, no round", "live suggestions, then a round")
NEEDS_BUDGET = ("suggestions, a third of the clicks", "suggestions, same clicks", "live suggestions, no round",
                "live suggestions, then a round")  # after "whole images, random"
LIVE = ("live suggestions, no round", "live suggestions, then a round")


@contextmanager
def locked(out: Path):
    """Hold ``OUT.lock`` while reading and rewriting the results: several ``--only`` processes (one
    curve each, one thread each) share one JSON."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_results(out: Path, settings: dict) -> dict | None:
    """The results ``out`` holds for these settings; None when it holds none; SystemExit(2) when it
    holds a run with other settings."""
    if not out.exists():
        return None
    old = json.loads(out.read_text())
    if any(old.get(k) != v for k, v in settings.items()):
        print(f"{out}: holds a run with other settings — drop --resume or pass another --out.", file=sys.stderr)
        raise SystemExit(2)
    return old


def effective_weighting(name: str, weight_on: str) -> str:
    """How ``name``'s rounds actually weighed a person's labels under ``--reviewed-weight-on
    weight_on``: "auto" is "images" for the whole-image curves and full supervision (every correction
    they save is reviewed) and "pixels" for the suggestion curves (no answer reviews a photo) —
    test_rounds checks that auto then samples and weighs exactly as those do."""
    if weight_on != "auto":
        return weight_on
    return "pixels" if name in NEEDS_BUDGET else "images"


def weighting_of(res: dict, name: str) -> str:
    """The ``--reviewed-weight-on`` that ``res``'s curve ``name`` ran with (files from before it was
    recorded per curve: the file's one setting, or "images", then the only way)."""
    return res.get("weight_on", {}).get(name) or res.get("reviewed_weight_on", "images")


def holds(res: dict, name: str, weight_on: str) -> bool:
    """Whether ``res`` has curve ``name`` as a run with ``weight_on`` would make it."""
    return name in res["results"] and (effective_weighting(name, weighting_of(res, name))
                                       == effective_weighting(name, weight_on))


def budgets(res: dict) -> dict:
    """Clicks per round for the suggestion curves: the random whole-image run's mean per round, and a third."""
    spent = [p["clicks"] for p in res["curves"]["whole images, random"][1:]]
    per_round = [b - a for a, b in zip([0, *spent], spent)]
    budget = max(1, round(sum(per_round) / len(per_round)))
    return {"same": budget, "third": max(1, budget // 3)}


def summarise(res: dict) -> dict:
    """The bounds the curves in hand give, and the goal once the random curve and the third are in."""
    got = res["results"]
    res["full_supervision_miou"] = got.get("full supervision", {}).get("full_supervision_miou")
    res["superpixel_oracle_miou"] = next((r["superpixel_oracle_miou"] for r in got.values()
                                          if r.get("superpixel_oracle_miou") is not None), None)
    res["missing"] = [c for c in CURVES if c not in got]
    before = res.get("budget_per_round")  # files from before "budgets": the one budget pair every curve ran with
    for c in NEEDS_BUDGET:
        if c in got and before and c not in res.setdefault("budgets", {}):
            res["budgets"][c] = before["same" if c.endswith("same clicks") else "third"]
    res["weight_on"] = {c: weighting_of(res, c) for c in got}  # each curve's --reviewed-weight-on, and what it did:
    res["weighting"] = {c: effective_weighting(c, w) for c, w in res["weight_on"].items()}
    if "whole images, random" in res["curves"] and "live suggestions, no round" in res["curves"]:
        whole, live = res["curves"]["whole images, random"][-1], res["curves"]["live suggestions, no round"]
        third = max((p for p in live[1:] if 3 * p["clicks"] <= whole["clicks"]), key=lambda p: p["clicks"], default=None)
        res["live_goal"] = {"whole_miou": whole["miou"], "whole_clicks": whole["clicks"],
                            "live_at_a_third": third, "live_at_whole_clicks": live[-1],
                            "met_third": third is not None and third["miou"] >= whole["miou"],
                            "met_whole_clicks": live[-1]["miou"] >= 0.86}
    if "live suggestions, then a round" in res["curves"]:  # its last three points: before the round, the
        before, raw, after = (p["miou"] for p in res["curves"]["live suggestions, then a round"][-3:])  # round's,
        res["live_round"] = {"before": before, "round": raw, "propagated": after,  # and those propagated again
                             "round_gain": raw - before, "propagated_gain": after - before}
        res.pop("live_round_gain", None)
    if "whole images, random" in res["curves"] and "suggestions, a third of the clicks" in res["curves"]:
        goal = res["curves"]["whole images, random"][-1]
        third = res["curves"]["suggestions, a third of the clicks"][-1]
        res["goal"] = {"whole_miou": goal["miou"], "whole_clicks": goal["clicks"], "suggestions_third_miou": third["miou"],
                       "suggestions_third_clicks": third["clicks"],
                       "met": third["miou"] >= goal["miou"] and 3 * third["clicks"] <= goal["clicks"]}
        res["budget_per_round"] = budgets(res)  # what the random curve now in hand gives the suggestion curves
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--correct-fraction", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=None, help="epochs per round (default: the round's own)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--reviewed-weight-on", choices=WEIGHT_ON, default=RoundConfig.reviewed_weight_on,
                    help="how the rounds weigh a person's labels (spn-napari round --reviewed-weight-on; "
                         "recorded per curve under weight_on: --resume reruns a curve held with a weighting that "
                         "acts otherwise on it)")
    ap.add_argument("--work", default=None, help="folder for the project copies (default runs/effort, "
                    "runs/effort-WEIGHT with another --reviewed-weight-on)")
    ap.add_argument("--out", default="benchmarks/results/effort.json")
    ap.add_argument("--png", default="docs/effort.png")
    ap.add_argument("--resume", action="store_true",
                    help="keep the curves --out already holds for these settings and run only the missing ones")
    ap.add_argument("--only", default=None, metavar="CURVE[;CURVE]",
                    help="run only these curves (implies --resume; several such processes may share --out): "
                         + "; ".join(CURVES))
    ap.add_argument("--again", action="store_true",
                    help="with --only: run the named curves even where --out holds them (the old one stays until "
                         "the new one lands; e.g. after the ranking changed)")
    ap.add_argument("--window", type=int, default=WINDOW,
                    help="checks in one pass of the suggestion queue (spn_napari.review.suggest.by_photo; recorded per "
                         "curve under rankings; 1: the ranking as it is)")
    ap.add_argument("--redraw", action="store_true",
                    help="run nothing: rewrite the summary of --out and its PNG (e.g. after the plot changed)")
    a = ap.parse_args()
    only = CURVES if a.only is None else tuple(c.strip() for c in a.only.split(";") if c.strip())
    if not only or (bad := [c for c in only if c not in CURVES]):
        print(f"--only {(bad[0] if only else a.only)!r}: not a curve; use one of: {'; '.join(CURVES)}.",
              file=sys.stderr)
        return 2
    resume = a.resume or a.only is not None or a.redraw
    if a.redraw:
        only = ()
    default_threads()
    threads = torch.get_num_threads()
    project = Project(a.project)
    default_work = "runs/effort" if a.reviewed_weight_on == RoundConfig.reviewed_weight_on else f"runs/effort-{a.reviewed_weight_on}"
    work = Path(a.work or default_work)
    out = Path(a.out)
    settings = {"project": a.project, "rounds": a.rounds, "correct_fraction": a.correct_fraction, "epochs": a.epochs}
    with locked(out):
        old = read_results(out, settings) if resume else None
        if old is None and not resume and work.exists():
            print(f"{work}: already exists — delete it, pass another --work, or add --resume.", file=sys.stderr)
            return 2
        if old is None:
            write_results(out, {**settings, "cpu": cpu_model(), "curves": {}, "seconds": {}, "threads": {},
                                "commands": {}, "results": {}})
    rc = RoundConfig(device=a.device, reviewed_weight_on=a.reviewed_weight_on)
    rc = rc if a.epochs is None else replace(rc, epochs=a.epochs)
    if a.window < 1:
        print(f"--window {a.window}: a pass takes at least one suggestion, e.g. --window {WINDOW}.", file=sys.stderr)
        return 2
    base = SimulateConfig(rounds=a.rounds, correct_fraction=a.correct_fraction, full_supervision=False,
                          round_config=rc, window=a.window)

    def config(name: str, res: dict) -> SimulateConfig | None:
        if name == "whole images, random":
            return base
        if name == "whole images, least certain first":
            return replace(base, select="uncertain")
        if name == "full supervision":
            return replace(base, rounds=0, full_supervision=True)  # no rounds: the bound only
        if "whole images, random" not in res["curves"]:
            return None
        b = budgets(res)
        if name == "live suggestions, no round":  # every click the whole-image rounds spent, no round
            return replace(base, annotator="suggestions", propagate=True, rounds=0,
                           budget=res["curves"]["whole images, random"][-1]["clicks"])
        if name == "live suggestions, then a round":  # one round's clicks, propagated, then a round
            return replace(base, annotator="suggestions", propagate=True, rounds=1, budget=b["same"])
        return replace(base, annotator="suggestions", budget=b["same" if name.endswith("same clicks") else "third"])

    for name in only:
        with locked(out):
            res = read_results(out, settings)
        if holds(res, name, a.reviewed_weight_on) and not a.again:
            continue
        cfg = config(name, res)
        if cfg is None:
            print(f"{name}: needs the curve 'whole images, random' first (its clicks are the budget); skipped.",
                  file=sys.stderr)
            continue
        arm = work / name.replace(" ", "-").replace(",", "")
        shutil.rmtree(arm, ignore_errors=True)  # a copy an interrupted run left
        with locked(out):  # and the rounds it recorded: this run starts over
            res = read_results(out, settings)
            if res.get("partial", {}).pop(name, None) is not None:
                write_results(out, res)
        t0 = time.perf_counter()

        def landed(ev, name=name):
            """Each finished round into the JSON at once ("partial"): a run cut short keeps them."""
            if ev.event != "sim_round":
                return
            with locked(out):
                res = read_results(out, settings)
                points = res.setdefault("partial", {}).get(name) or curve({"start_miou": ev.data["start_miou"], "rounds": []})
                res["partial"][name] = points + [point(ev.data["row"])]
                write_results(out, res)

        got = run(simulate(project, cfg, work=arm), landed).data
        with locked(out):  # merged into what the other processes wrote meanwhile
            res = read_results(out, settings)
            res.get("partial", {}).pop(name, None)
            res["seconds"][name] = time.perf_counter() - t0
            res.setdefault("threads", {})[name] = threads
            res.setdefault("commands", {})[name] = command_line()
            res.setdefault("weight_on", {})[name] = a.reviewed_weight_on
            starts = {c: pts[0]["miou"] for c, pts in res["curves"].items()}
            if any(abs(v - got["start_miou"]) > 0.002 for v in starts.values()):  # another base project
                res.setdefault("warnings", []).append(
                    f"{name}: starts at mIoU {got['start_miou']:.4f}, the other curves at "
                    + ", ".join(f"{v:.4f}" for v in starts.values()) + " — rebuilt base project differs")
                print(f"warning: {res['warnings'][-1]}", file=sys.stderr)
            if not cfg.full_supervision:
                res["curves"][name] = curve(got)
            if name in NEEDS_BUDGET:  # the clicks a round this curve ran with (the random curve may be rerun later)
                res.setdefault("budgets", {})[name] = cfg.budget
            if cfg.annotator == "suggestions":  # which ranking made this curve: curves from older code differ
                res.setdefault("rankings", {})[name] = {"every_round": asdict(WEIGHTS), "window": cfg.window}
            res["results"][name] = {k: got[k] for k in ("superpixel_oracle_miou", "full_supervision_miou")}
            summarise(res)
            write_results(out, res)
            plot(res, Path(a.png))
        print(f"{name}: " + ", ".join(f"{p['clicks']} clicks → {p['miou']:.3f}" for p in res["curves"].get(name, []))
              + f" (full supervision {got['full_supervision_miou']})", file=sys.stderr, flush=True)
    with locked(out):  # the summary and the PNG from what the JSON holds (with --resume and nothing to run: redrawn)
        res = summarise(read_results(out, settings))
        write_results(out, res)
    plot(res, Path(a.png))
    if res.get("missing"):
        print(f"{out}: still missing {'; '.join(res['missing'])} — run again with --resume (or --only).", file=sys.stderr)
    if "goal" in res:
        g = res["goal"]
        print(f"{a.rounds} whole-image rounds: {g['whole_clicks']} clicks → mIoU {g['whole_miou']:.3f}; suggestions "
              f"with a third of the clicks: {g['suggestions_third_clicks']} → {g['suggestions_third_miou']:.3f}; "
              f"superpixel oracle {res['superpixel_oracle_miou']:.3f}. Wrote {out} and {a.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
