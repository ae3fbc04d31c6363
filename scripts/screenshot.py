"""The README's screenshot: napari with the SPN annotator dock on the demo project.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot.py [PROJECT] [--out docs/plugin.png]

PROJECT defaults to runs/demo/project (the README's first command makes it). The script opens
the viewer as a user would (the dock from the plugin, the project's first image with a tag of
two classes when there is one) from a throw-away copy of the project, shows the SP-CAM
evidence of the first tag, and saves the whole window. Nothing is written to PROJECT.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project", nargs="?", default="runs/demo/project")
    ap.add_argument("--out", default="docs/plugin.png")
    ap.add_argument("--size", default="1500x950")
    a = ap.parse_args()
    import napari
    from qtpy.QtWidgets import QApplication

    from spn_napari._widgets.annotator_widget import AnnotatorWidget

    work = Path(tempfile.mkdtemp(prefix="spn-screenshot-"))
    try:
        root = work / "project"
        shutil.copytree(a.project, root)
        viewer = napari.Viewer(title="spn-napari — SPN annotator")
        w, h = (int(v) for v in a.size.split("x"))
        viewer.window._qt_window.resize(w, h)
        widget = AnnotatorWidget(viewer)
        viewer.window.add_dock_widget(widget, name="SPN annotator", area="right")
        widget.open_project(root)
        project = widget.annotator.project
        image = next((i for i, im in enumerate(project.images) if len(im.tags) >= 2), 0)
        widget.show_image(image)
        widget.klass.setCurrentIndex(project.images[image].tags[0] + 1)
        widget.rounds.refresh()
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
