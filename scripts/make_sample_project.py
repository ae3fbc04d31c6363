"""Make the pretrained sample project that napari's File › Open Sample › SPN demo project opens.

    python scripts/make_sample_project.py [--out spn_napari/sample/demo-project.zip] [--n 12] [--size 128]

The same recipe as ``spn-napari demo`` (:func:`spn_napari.pipeline.run_demo`): generated demo
images, superpixels with the demo's 100 segments, an SPN with the demo's encoder
(:data:`spn_napari.pipeline.DEMO_ENCODER`) and its default epochs, CAM and SP-CAM
pseudo-labels; only fewer images, so that the archive stays small (< 2 MB), and no refinement
round. The project is packed into one zip (sorted entries, fixed timestamps: the same project
gives the same bytes) that ships as package data; :func:`spn_napari.napari_io.sample_project`
unpacks it into a writable folder and opens it, so the viewer trains nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the worktree's spn_napari, installed or not

from spn_napari.napari_io import SAMPLE_ARCHIVE  # noqa: E402
from spn_napari.project import kinds  # noqa: E402

SKIP = (".lock", "-wal", "-shm", "-journal")  # SQLite's and the store's transient files
STAMP = (2020, 1, 1, 0, 0, 0)  # every entry's time: the archive's bytes follow its content only


def make_project(work: Path, *, n: int, size: int, seed: int, epochs: int | None) -> Path:
    """Build the sample project under ``work``/project (the data set under ``work``/data)."""
    from spn_napari.data.synthetic import write_demo_dataset
    from spn_napari.evaluate import evaluate_labels
    from spn_napari.evidence.pseudo_labels import PseudoLabelConfig, make_pseudo_labels
    from spn_napari.evidence.superpixels import SuperpixelConfig, compute_superpixels
    from spn_napari.pipeline import DEMO_ENCODER, init_project, run
    from spn_napari.runtime import default_threads
    from spn_napari.train import TrainConfig, train_spn

    default_threads()
    data = write_demo_dataset(work / "data", n=n, size=size, seed=seed)
    project = init_project(work / "project", data)
    run(compute_superpixels(project, SuperpixelConfig(n_segments=100)))  # as run_demo
    run(train_spn(project, TrainConfig(seed=seed, encoder=DEMO_ENCODER, **({"epochs": epochs} if epochs else {}))))
    for method in ("cam", "sp-cam"):
        run(make_pseudo_labels(project, PseudoLabelConfig(method=method)))
        print(f"{method}: mIoU {evaluate_labels(project, kinds.pseudo_labels(method))['miou']:.3f}", file=sys.stderr)
    project.sweep()
    project.close()
    return project.root


def pack(project: Path, out: Path) -> None:
    """Zip ``project`` into ``out`` (written beside it, then renamed into place)."""
    files = sorted(p for p in project.rglob("*") if p.is_file() and not p.name.endswith(SKIP))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for p in files:
            info = zipfile.ZipInfo(p.relative_to(project).as_posix(), STAMP)
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            zf.writestr(info, p.read_bytes())
    tmp.replace(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=SAMPLE_ARCHIVE, help=f"the archive (default {SAMPLE_ARCHIVE})")
    ap.add_argument("--n", type=int, default=12, help="demo images (default 12)")
    ap.add_argument("--size", type=int, default=128, help="image side in pixels (default 128; the demo: 160)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="SPN epochs (default: the demo encoder's)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="spn-sample-") as work:
        project = make_project(Path(work), n=a.n, size=a.size, seed=a.seed, epochs=a.epochs)
        pack(project, a.out)
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e6:.2f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()
