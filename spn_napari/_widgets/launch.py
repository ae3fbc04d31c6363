"""Open a project in napari with the SPN annotator docked (what `spn-napari demo --open` does)."""

from __future__ import annotations


def open_viewer(project_dir, *, block: bool = True):
    """A napari viewer showing ``project_dir`` with the dock; runs the Qt loop when ``block``."""
    try:
        import napari
    except ImportError:
        from ..errors import SpnError
        raise SpnError("napari is not installed (a plain `pip install spn-napari` is the engine and the CLI "
                       "only) — pip install \"spn-napari[all]\" for the viewer.") from None

    from .annotator_widget import AnnotatorWidget
    viewer = napari.Viewer(title="spn-napari")
    widget = AnnotatorWidget(viewer)
    viewer.window.add_dock_widget(widget, name="SPN annotator", area="right")
    widget.open_project(project_dir)
    if block:
        napari.run()
    return viewer, widget
