"""Predicting new images with a project's model: set up once, predict many (segment-anything's
predictor shape), and the batch over image files that ``spn-napari predict`` runs.

Which model predicts:

- a round r ≥ 1: its DecoupledNet, with the test-time views the round predicted the project's
  own images with (:func:`spn_napari.rounds.predict.round_views`; a round made before them: the middle
  of its training sides), exactly as the round did (:func:`spn_napari.rounds.predict.predict_labels`);
- before the first round, and round 0 (whose labels are the SPN's pseudo-labels): the SPN, with
  the project's pseudo-label method (round 0's ``start_from``; before it the method
  ``pseudo-labels`` last wrote) and the evidence settings those were made with (sides, mirrored
  views, normalisation: :class:`~spn_napari.evidence.maps.EvidenceSettings`, from ``project.db``).
  SP-CAM needs superpixels: they are computed for the new image with the SLIC settings of the
  project's own, so a project image gets the superpixels it has in the project.

The classes each image is segmented for are its tags when given; otherwise the model's own
image-level classifier decides (probability > 0.5): the DecoupledNet's frozen classification net
(what the paper does at test time), or the SPN's superpixel branch before the first round.

So a project image predicted with its tags gets the labels its round stored for it, pixel for
pixel: with a frozen encoder whose maps the project caches (lite0) the backbone map goes through
the cache's float16 as well (:func:`spn_napari.evidence.features.backbone_map`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from ..data.generic import label_rows, resolve_image_name
from ..data.images import IMAGE_SUFFIXES, as_rgb, is_image_file, load_image
from ..errors import ProjectError, SpnError
from ..events import Event
from ..evidence.cam import METHODS
from ..evidence.features import image_view_maps, views
from ..evidence.maps import EvidenceSettings, label_evidence
from ..evidence.pseudo_labels import image_evidence
from ..evidence.superpixels import SuperpixelConfig, slic_labels
from ..labels import pseudo_method
from ..models.decoupled import DecoupledNet
from ..models.spn import SPN
from ..project import kinds
from ..project.store import Project
from ..rounds.predict import image_class_probabilities, predict_labels
from ..runtime import load_decoupled, load_spn, resolve_device
from .export import label_palette, write_mask

__all__ = ["Segmenter", "predict_paths"]


class Segmenter:
    """A project's model, ready to label any image: ``Segmenter.from_project(path).predict(image)``.

    Construct with :meth:`from_project`; the keyword-only constructor takes the pieces:
    ``model`` a DecoupledNet (a round) or an SPN (before the first round, and round 0), in eval
    mode on ``device``; ``sides`` the canvas sides it runs at; for a DecoupledNet ``flip`` (each
    side's mirrored canvas too; its probabilities are averaged over the views) and
    ``class_side`` (the side its classifier runs at without tags; default the first side); for an SPN
    ``method`` ('sp-cam' | 'cam'), ``threshold`` (fraction of each class map's peak) and
    ``superpixels`` (the SLIC settings) and ``evidence`` (views and normalisation; by default
    ``sides`` without mirrored views, each method's normalisation); ``cached``: the backbone map
    goes through the feature cache's float16, as it did when the project's labels were made.
    """

    def __init__(self, *, model: DecoupledNet | SPN, classes: Sequence[str], colors: Sequence[str],
                 has_background: bool = True, sides: Sequence[int], device: torch.device | str = "cpu",
                 round_no: int | None = None, method: str = "decoupled", threshold: float = 0.5,
                 superpixels: SuperpixelConfig | None = None, cached: bool = False,
                 evidence: EvidenceSettings | None = None, flip: bool = False,
                 class_side: int | None = None) -> None:
        if isinstance(model, SPN) and method not in METHODS:
            raise ValueError(f"an SPN predicts with one of {METHODS}, not {method!r}")
        if isinstance(model, DecoupledNet):
            method = "decoupled"
        if len(classes) != len(colors):
            raise ValueError(f"{len(classes)} classes but {len(colors)} colours")
        self.model, self.device = model, torch.device(device)
        self._classes, self._colors = tuple(classes), tuple(colors)
        self._background, self._round = bool(has_background), round_no
        self.sides, self.method, self.threshold = tuple(int(s) for s in sides), method, float(threshold)
        self.superpixels = superpixels or SuperpixelConfig()
        self.cached = bool(cached)
        self.views = views(self.sides, flip)  # the DecoupledNet's test-time passes
        self.class_side = int(class_side or self.sides[0])
        self.evidence = evidence or EvidenceSettings(method=method, sides=self.sides, flip=False, normalise=None,
                                                     threshold=self.threshold)

    @classmethod
    def from_project(cls, path: Path | str | Project, round_no: int | None = None,
                     device: str = "auto") -> Segmenter:
        """The model of round ``round_no`` of the project at ``path`` (default: the current round;
        the SPN before the first round) on ``device`` ('auto', 'cpu', 'cuda', 'cuda:N').

        A ProjectError (one line: what and the fix) when there is no such round or no trained
        model yet; an SpnError for an unusable device."""
        project = path if isinstance(path, Project) else Project(path)
        dev = resolve_device(device)
        rounds = {e["round"]: e for e in project.rounds()}
        if round_no is not None and round_no not in rounds:
            have = ", ".join(str(r) for r in rounds) or "none yet"
            raise ProjectError(f"--round {round_no}: {project.root} has no round {round_no} (rounds: {have}) — "
                               f"pick one from `spn-napari history {project.root}`, or leave --round out.")
        r = project.current_round() if round_no is None else round_no
        common = {"classes": project.classes, "colors": project.colors, "has_background": project.has_background,
                  "device": dev, "round_no": r}
        if r is not None and r > 0:  # a refinement round: its DecoupledNet
            model, ckpt = load_decoupled(project, r, dev)
            mid = sorted(ckpt["scales"])[len(ckpt["scales"]) // 2]
            passes = ckpt.get("views") or [(mid, False)]  # a round made before test-time views: its middle side
            cached = getattr(model.encoder, "cacheable", False) and rounds[r]["config"].get("cache", True)
            return cls(model=model, sides=sorted({int(s) for s, _ in passes}), flip=any(m for _, m in passes),
                       class_side=mid, cached=cached, **common)
        model, ckpt = load_spn(project, dev)  # round 0 and before: the SPN's pseudo-labels
        if r == 0:
            method = rounds[0]["config"].get("start_from", "sp-cam")
        else:
            method = pseudo_method(project) or METHODS[0]
        pseudo = project.artifact(kinds.pseudo_labels(method)) or {}
        scales = sorted(ckpt["scales"])
        evidence = EvidenceSettings.from_meta(pseudo.get("meta", {}), method, [scales[len(scales) // 2]])
        sp_meta = project.require(kinds.SUPERPIXELS)["meta"]
        sp_cfg = SuperpixelConfig(**{f.name: sp_meta[f.name] for f in fields(SuperpixelConfig) if f.name in sp_meta})
        return cls(model=model, sides=evidence.sides, method=method, threshold=evidence.threshold,
                   superpixels=sp_cfg, cached=getattr(model.encoder, "cacheable", False), evidence=evidence, **common)

    # ---- what it labels with --------------------------------------------------------------
    @property
    def classes(self) -> tuple[str, ...]:
        """Class names; class c (0-based) is label value c + 1."""
        return self._classes

    @property
    def colors(self) -> tuple[str, ...]:
        """'#rrggbb' colour of each class, as the project shows it."""
        return self._colors

    @property
    def has_background(self) -> bool:
        """True: label value 0 is background; False: 0 means no label (every pixel is a class)."""
        return self._background

    @property
    def round(self) -> int | None:
        """The round whose model this is (None: the SPN before any round; 0: the SPN of round 0)."""
        return self._round

    @property
    def palette(self) -> list[int]:
        """The 768-entry PNG palette of the project's colours (see :func:`spn_napari.predict.export.label_palette`)."""
        return label_palette(self._colors)

    def class_indices(self, tags: Iterable[str | int] | str) -> list[int]:
        """Tags -> sorted 0-based class indices. A tag is a class name (any case, as in a
        labels.csv) or a 0-based index into :attr:`classes`; an unknown one raises SpnError
        naming it and the classes there are."""
        tags = [tags] if isinstance(tags, str) else list(tags)
        by_key = {c.casefold(): i for i, c in enumerate(self._classes)}
        out = set()
        for t in tags:
            if isinstance(t, str):
                if t.strip().casefold() not in by_key:
                    bg = " (an image with no class has no tags)" if t.strip().casefold() == "background" else ""
                    raise SpnError(f"tag '{t}': not a class of this project{bg} — use one of "
                                   f"{', '.join(self._classes)}.")
                out.add(by_key[t.strip().casefold()])
            elif isinstance(t, (int, np.integer)) and not isinstance(t, bool):
                if not 0 <= int(t) < len(self._classes):
                    listed = ", ".join(f"{i} {c}" for i, c in enumerate(self._classes))
                    raise SpnError(f"tag {int(t)}: no class {int(t)} in this project — use "
                                   f"0..{len(self._classes) - 1} ({listed}).")
                out.add(int(t))
            else:
                raise TypeError(f"a tag is a class name or a 0-based class index, not {t!r}")
        return sorted(out)

    # ---- predicting -----------------------------------------------------------------------
    def _backbone(self, image: np.ndarray, side: int) -> torch.Tensor | None:
        """(Cb, g, g) float32 as the feature cache would give it, or None to run the encoder on the image."""
        maps = self._view_maps(image, [(side, False)])
        return None if maps is None else maps[(side, False)]

    def _view_maps(self, image: np.ndarray, passes) -> dict | None:
        """{(side, mirrored): (Cb, g, g) float32} as the feature cache gives them (a project image's
        labels were made from these), or None to run the encoder on the image."""
        return image_view_maps(self.model.encoder, image, passes, self.device) if self.cached else None

    def _evidence(self, image: np.ndarray):
        """The SPN's evidence for ``image`` and its superpixels (H, W) int32: every view of
        ``evidence``, through the cache's float16 when the project's evidence went through it."""
        sp = slic_labels(image, self.superpixels)
        ev = self.evidence
        backbone = self._view_maps(image, views(ev.sides, ev.flip))
        return image_evidence(self.model, image, sp, ev.sides, self.device, backbone, flip=ev.flip,
                              aggregate=ev.aggregate), sp

    @torch.no_grad()
    def class_probabilities(self, image: np.ndarray) -> np.ndarray:
        """(C,) float image-level probability of each class: the DecoupledNet's frozen
        classification net, or the SPN's superpixel branch (max over its sides)."""
        image = as_rgb(image)
        if isinstance(self.model, SPN):
            return self._evidence(image)[0].probs
        return self._decoupled_probs(image, self._backbone(image, self.class_side))

    def _decoupled_probs(self, image: np.ndarray, backbone: torch.Tensor | None) -> np.ndarray:
        return image_class_probabilities(self.model, image, self.class_side, self.device, backbone)  # (C,)

    @torch.no_grad()
    def predict(self, image: np.ndarray, tags: Iterable[str | int] | None = None) -> np.ndarray:
        """image (H, W, 3) uint8 (other layouts are converted as :func:`spn_napari.data.images.as_rgb`
        says) -> (H, W) uint8 labels: 0 background (or no label without a background class),
        c + 1 class c. ``tags``: the classes in the image (names or 0-based indices, see
        :meth:`class_indices`); None: those the model's classifier gives a probability > 0.5."""
        image = as_rgb(image)
        classes = None if tags is None else self.class_indices(tags)
        if isinstance(self.model, SPN):
            ev, sp = self._evidence(image)
            if classes is None:
                classes = np.flatnonzero(ev.probs > 0.5).tolist()
            return label_evidence(ev, sp, classes, self.evidence, background=self._background)  # (H, W)
        if classes is None:
            classes = np.flatnonzero(self._decoupled_probs(image, self._backbone(image, self.class_side)) > 0.5).tolist()
        labels, _ = predict_labels(self.model, image, classes, self.views, self.device,
                                   background=self._background, backbone=self._view_maps(image, self.views))
        return labels  # (H, W)


# ---- a batch of files ------------------------------------------------------------------------
def _inputs(paths: Iterable[Path | str]) -> list[tuple[Path, str | None, str | None]]:
    """Files to predict, in the order given (a folder's image files sorted by name): each as
    (path, output name, None), or (path, None, the one-line error) for an input that cannot be."""
    items, seen = [], {}
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = [f for f in sorted(p.iterdir())
                     if f.is_file() and is_image_file(f) and not f.name.startswith(".")]
            if not files:
                items.append((p, None, f"{p}: no image files in this folder (expected {', '.join(IMAGE_SUFFIXES)}) "
                                       f"— point to a folder of images, or to image files."))
        elif p.exists():
            files = [p]
        else:
            items.append((p, None, f"{p}: no such file or folder — check the path."))
            files = []
        for f in files:
            first = seen.get(f.stem)
            if first is not None and first.resolve() == f.resolve():
                continue  # the same file twice (a folder and one of its files)
            if first is not None:
                items.append((f, None, f"{f}: same name '{f.stem}' as {first}, so both masks would be "
                                       f"{f.stem}.png — rename one, or predict them into separate folders."))
                continue
            seen[f.stem] = f
            items.append((f, f.stem, None))
    return items


def _tag_rows(tags: Path, names: dict[str, Path]) -> dict[str, tuple[int, tuple[str, ...]] | str]:
    """labels.csv rows of the images predicted: name -> (line, tag names), or the one-line error
    of an image with two rows. Rows of other images are left alone (one file may tag many)."""
    out: dict[str, tuple[int, tuple[str, ...]] | str] = {}
    for line, name, tag_names in label_rows(tags):
        stem = resolve_image_name(name, names)
        if stem is None:
            continue
        if stem in out:
            first = out[stem][0] if isinstance(out[stem], tuple) else "an earlier line"
            out[stem] = (f"{tags}:{line}: image '{name}' already has a row on line {first} — merge the two "
                         f"rows into one.")
        else:
            out[stem] = (line, tag_names)
    return out


def predict_paths(segmenter: Segmenter, inputs: Iterable[Path | str], out: Path | str,
                  tags: Path | str | None = None) -> Iterator[Event]:
    """Predict every image of ``inputs`` (image files, and folders of them) into ``out/NAME.png``:
    one palette PNG per image at the image's size, value c + 1 = class c, in the project's colours.

    ``tags``: a labels.csv as in the generic data set layout (header 'image,labels', tags joined
    by ';'); each image is segmented for its row's tags. Without it the classifier decides.

    Yields 'image' (written: input, mask) or 'skipped' (input, error: one line naming the file
    and the fix) per input, then 'done' (written, skipped, out). An input that cannot be
    predicted — not an image, a folder without images, no or a bad labels.csv row — is skipped
    and nothing is written for it; the others still are. A problem with ``out`` or the labels.csv
    as a whole raises SpnError before anything is written.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SpnError(f"--out {out}: is a file — choose a folder for the masks.")
    items = _inputs(inputs)
    rows = None
    if tags is not None:
        tags = Path(tags)
        rows = _tag_rows(tags, {stem: p for p, stem, err in items if err is None})
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpnError(f"--out {out}: cannot create it ({exc.strerror or exc}) — choose a folder you can "
                       f"write to.") from None
    palette, total, written = segmenter.palette, len(items), 0
    for k, (path, stem, error) in enumerate(items, 1):
        try:
            if error is not None:
                raise SpnError(error)
            classes = None
            if rows is not None:
                row = rows.get(stem)
                if row is None:
                    raise SpnError(f"{path}: no row in {tags} — add a line '{path.name},TAG;TAG' (no tags for an "
                                   f"image of background only), or predict it without --tags.")
                if isinstance(row, str):
                    raise SpnError(row)
                try:
                    classes = segmenter.class_indices(row[1])
                except SpnError as exc:
                    raise SpnError(f"{tags}:{row[0]} ({path.name}): {exc}") from None
            mask = segmenter.predict(load_image(path), classes)  # (H, W) uint8
            target = out / f"{stem}.png"
            try:
                write_mask(target, mask, palette)
            except OSError as exc:
                raise SpnError(f"{target}: cannot write it ({exc.strerror or exc}) — free some space or "
                               f"choose another --out.") from None
        except SpnError as exc:
            yield Event("skipped", k, total, {"input": str(path), "error": str(exc)})
            continue
        written += 1
        yield Event("image", k, total, {"input": str(path), "mask": str(target)})
    yield Event("done", total, total, {"written": written, "skipped": total - written, "out": str(out)})
