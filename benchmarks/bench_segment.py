"""The dock's Segment: the first request and the tenth, side by side, through the long-lived child.

    python benchmarks/bench_segment.py [--project runs/real_photos/project] [--image N] [--requests 10]
        [--out benchmarks/results/segment.json]

Starts ``spn-napari serve PROJECT`` as the dock does (a child at the dock's niceness and threads,
:func:`spn_napari.jobs.child_threads`), sends the same photo (image N of the project, written to a
PNG as the dock writes a layer) ``--requests`` times, each after the previous answer, and times
each from the request's write to its answer's line: the first includes starting Python, importing
torch and loading the model; the later ones only the labelling. Also times the one-shot
``spn-napari predict`` child the dock ran before, for the same photo. Goal: ≤ 1 s from the
second request on, for a 320×213 photo on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from spn_napari.jobs import CHILD_NICE, child_threads, predict_command, serve_command
from spn_napari.project.store import Project

from _shared import cpu_model, write_results  # benchmarks/ is on sys.path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", default="runs/real_photos/project")
    ap.add_argument("--image", type=int, default=0)
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="write the JSON here")
    a = ap.parse_args()
    project = Project(a.project)
    image = project.image(a.image)
    env = {**os.environ, "SPN_NAPARI_NICE": str(CHILD_NICE), "SPN_NAPARI_THREADS": str(child_threads())}
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.png"
        Image.fromarray(image).save(photo)
        t0 = time.perf_counter()
        proc = subprocess.Popen(serve_command(a.project, device=a.device), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env)
        seconds = []
        for k in range(1, a.requests + 1):
            start = t0 if k == 1 else time.perf_counter()  # the first request waits for the start too
            proc.stdin.write(json.dumps({"id": k, "image": str(photo), "out": f"{tmp}/m{k}.png"}) + "\n")
            proc.stdin.flush()
            while True:
                answer = json.loads(proc.stdout.readline())
                if answer.get("id") == k:
                    break
            if answer["event"] != "done":
                print(f"request {k}: {answer}", file=sys.stderr)
                return 1
            seconds.append(time.perf_counter() - start)
        proc.stdin.close()
        proc.wait(30)
        t0 = time.perf_counter()
        subprocess.run(predict_command(a.project, [photo], Path(tmp) / "once", device=a.device), env=env,
                       check=True, capture_output=True)
        one_shot = time.perf_counter() - t0
    res = {"project": a.project, "image": project.images[a.image].name, "size": list(image.shape[:2]),
           "cpu": cpu_model(), "cores": os.cpu_count(), "child_threads": child_threads(), "device": a.device,
           "first_s": seconds[0], "tenth_s": seconds[min(9, len(seconds) - 1)], "later_median_s":
           sorted(seconds[1:])[len(seconds[1:]) // 2] if len(seconds) > 1 else None,
           "seconds": seconds, "one_shot_predict_s": one_shot, "goal_later_s": 1.0}
    print(f"{res['image']} {image.shape[1]}×{image.shape[0]} on {a.device}, {cpu_model()}, child threads "
          f"{child_threads()}: first request {res['first_s']:.2f} s, tenth {res['tenth_s']:.2f} s "
          f"(median of 2..{len(seconds)}: {res['later_median_s']:.2f} s; goal ≤ 1 s); "
          f"a one-shot `predict` child: {one_shot:.2f} s")
    if a.out:
        write_results(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
