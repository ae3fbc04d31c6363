"""Qt widgets for napari: the only part of spn_napari that imports Qt or napari."""
