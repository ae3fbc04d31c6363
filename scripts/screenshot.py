"""The README's screenshot: napari with the SPN annotator dock on a project of real photos.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot.py [PROJECT] [--out docs/plugin.png]
        [--image NAME] [--tag 2] [--outlines] [--unsure] [--expand run,segment,rounds]

PROJECT defaults to runs/real_photos/project (msrc-dev, which `python benchmarks/real_photos.py`
makes; runs/demo/project, from the README's first command, works too). The script opens the
viewer as a user would (the dock from the plugin) on a throw-away copy of the project, shows
image NAME (default: the first photo with two tags), chooses its ``--tag``-th tag as a person
pressing that number key would (the dock's default is the tag with the most labelled area), so
SP-CAM shows that class's evidence, and saves the whole window. Nothing is written to PROJECT.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project", nargs="?", default="runs/real_photos/project")
    ap.add_argument("--out", default="docs/plugin.png")
    ap.add_argument("--image", default=None, help="the photo to show (default: the first with two tags)")
    ap.add_argument("--tag", type=int, default=1, help="which of its tags to choose (1: the largest)")
    ap.add_argument("--outlines", action="store_true", help="labels as outlines (the O key)")
    ap.add_argument("--unsure", action="store_true", help="show the Unsure layer (the U key)")
    ap.add_argument("--expand", default="", help="sections to open, e.g. run,segment,rounds")
    ap.add_argument("--size", default="1500x950")
    a = ap.parse_args()
    import napari
    from qtpy.QtWidgets import QApplication

    from spn_napari._widgets.annotator_widget import AnnotatorWidget
    from spn_napari._widgets.napari_adapter import main_window

    work = Path(tempfile.mkdtemp(prefix="spn-screenshot-"))
    try:
        root = work / "project"
        shutil.copytree(a.project, root)
        viewer = napari.Viewer(title="spn-napari — SPN annotator")
        w, h = (int(v) for v in a.size.split("x"))
        main_window(viewer).resize(w, h)
        widget = AnnotatorWidget(viewer)
        viewer.window.add_dock_widget(widget, name="SPN annotator", area="right")
        widget.open_project(root)
        project = widget.annotator.project
        names = [im.name for im in project.images]
        if a.image is not None and a.image not in names:
            raise SystemExit(f"--image {a.image}: no such image in {a.project}")
        image = names.index(a.image) if a.image else next((i for i, im in enumerate(project.images)
                                                            if len(im.tags) == 2), 0)
        widget.show_image(image)
        widget.choose_tag(a.tag - 1)
        widget.outlines.setChecked(a.outlines)
        widget.unsure.setChecked(a.unsure)
        widget.rounds.refresh()
        for name in filter(None, a.expand.split(",")):
            widget.sections[name.strip()].set_expanded(True)
        app = QApplication.instance()
        for _ in range(5):
            app.processEvents()
        viewer.reset_view()  # fit to the canvas as laid out in the resized window
        for _ in range(5):
            app.processEvents()
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(out), canvas_only=False, flash=False)
        print(f"wrote {out}")
        widget.timer.stop()
        viewer.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
