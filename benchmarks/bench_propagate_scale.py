"""Live propagation at 20,000 photos against 200: refit, relabelling, saving, the shown photo, the queue.

    python benchmarks/bench_propagate_scale.py [--sizes 200 20000] [--repeat 3] [--dims 64]
        [--cache runs/bench_cache/propagate] [--real runs/real_photos/project]
        [--out benchmarks/results/propagate_scale.json]

Projects: the tiny random-image projects of ``bench_dock_scale.py`` (16×16 px, 3 classes, one or two
tags, pseudo-labels), with every pixel a superpixel of its own (256 a photo, about the 238 of an
msrc-dev photo), random SP-CAM scores and random ``--dims`` descriptors in the project's descriptor
store (the engine's format; an SPN would make the same arrays), built once into ``--cache``. For
each size, side by side in one run: opening the live head (the table: one pass over the photos,
once a round), then with 100 superpixels set by a person, ``--repeat`` times each: a refit (the
unchecked superpixels sampled: ``PropagateConfig.sample``), relabelling every photo, committing the
labels, the shown photo's labels read afresh after a commit (``spn_napari.labels.current_labels``:
what the dock does on the GUI thread), and the suggestion queue ranked again (its best
``LIVE_QUEUE``). Goals: a refit within 2 s and the shown photo within 100 ms at 20,000 photos; the
descriptors within 64 KB a photo (``--real``: also the size of a real project's store a photo).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import numpy as np

from spn_napari.project import kinds
from spn_napari.project.live_labels import read_live
from spn_napari.runtime import default_threads

from _dock import SIDE, add_superpixels, build_project, cached_project
from _shared import command_line, cpu_model, returned, write_results  # benchmarks/ is on sys.path

RESULTS = Path(__file__).parent / "results" / "propagate_scale.json"
PERSON = 100  # superpixels a person set before the timed refits


def build(dims: int):
    def make(root: Path, n: int) -> None:
        from spn_napari.project.store import Project
        build_project(root, n)
        add_superpixels(root, np.arange(SIDE * SIDE, dtype=np.int32).reshape(SIDE, SIDE))  # a pixel a superpixel
        project = Project(root)
        rng = np.random.default_rng(1)
        m = n * SIDE * SIDE
        buf = io.BytesIO()
        np.savez(buf, offsets=np.arange(n + 1, dtype=np.int64) * SIDE * SIDE, area=np.ones(m, np.int32),
                 desc=rng.standard_normal((m, dims), dtype=np.float32).astype(np.float16))
        project.commit_file(kinds.DESCRIPTORS, buf.getvalue(), suffix=".npz", depends=(kinds.SUPERPIXELS,),
                            meta={"source": "random", "dims": dims})
    return make


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(root: Path, repeat: int) -> dict:
    from spn_napari.labels import current_labels
    from spn_napari.live.head import LiveHead, PropagateConfig
    from spn_napari.project.store import Project
    from spn_napari.review.suggest import LIVE_QUEUE, _ranking
    project = Project(root)
    n = len(project)
    t0 = time.perf_counter()
    head = returned(LiveHead.open(project, PropagateConfig()))
    opening = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    for r in rng.choice(len(head.live.labels), PERSON, replace=False):
        i = int(np.searchsorted(head.desc.offsets, r, side="right") - 1)
        head.set_person(i, int(r - head.desc.offsets[i]), int(rng.choice(project.images[i].tags)) + 1)
    out = {"photos": n, "superpixels": int(len(head.live.labels)), "open_s": opening,
           "refit_s": [], "relabel_s": [], "save_s": [], "shown_photo_s": [], "queue_s": []}
    for _ in range(repeat):
        out["refit_s"].append(timed(head.refit))
        out["relabel_s"].append(timed(head.relabel))
        out["save_s"].append(timed(head.save))
        i = int(rng.integers(n))
        out["shown_photo_s"].append(timed(lambda i=i: current_labels(project, i)))
        out["queue_s"].append(timed(lambda: _ranking(project, LIVE_QUEUE)))
    out["descriptor_bytes_per_photo"] = project.file(kinds.DESCRIPTORS).stat().st_size / n
    out["live_bytes"] = project.file(kinds.live_labels(0)).stat().st_size
    assert read_live(project) is not None
    for key in ("refit_s", "relabel_s", "save_s", "shown_photo_s", "queue_s"):
        out[key.replace("_s", "_median_s")] = statistics.median(out[key])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs=2, default=[200, 20000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dims", type=int, default=64)
    ap.add_argument("--cache", default="runs/bench_cache/propagate")
    ap.add_argument("--real", default=None, help="a real project: its descriptor store's bytes a photo")
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args()
    default_threads()
    res = {"command": command_line(), "cpu": cpu_model(), "dims": a.dims, "sizes": {}}
    for n in a.sizes:
        root = cached_project(Path(a.cache) / f"d{a.dims}", n, build(a.dims))
        res["sizes"][str(n)] = measure(root, a.repeat)
        print(n, {k: v for k, v in res["sizes"][str(n)].items() if not isinstance(v, list)})
    small, large = (res["sizes"][str(n)] for n in a.sizes)
    res["ratio"] = {k: large[k] / small[k] for k in large if k.endswith("median_s") or k == "open_s"}
    if a.real:
        from spn_napari.project.store import Project
        real = Project(a.real)
        res["real"] = {"project": a.real, "bytes_per_photo": real.file(kinds.DESCRIPTORS).stat().st_size / len(real),
                       "dims": (real.artifact(kinds.DESCRIPTORS) or {}).get("meta", {}).get("dims")}
    res["goals"] = {"refit_s_at_large": large["refit_median_s"], "refit_goal_s": 2.0,
                    "shown_photo_s_at_large": large["shown_photo_median_s"], "shown_photo_goal_s": 0.1,
                    "descriptor_bytes_per_photo_goal": 65536}
    write_results(a.out, res)
    print(res["ratio"], res.get("real"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
