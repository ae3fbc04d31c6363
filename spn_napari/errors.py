"""User-facing errors: one line naming the file or flag and the fix.

The CLI prints ``str(err)`` and exits with status 2 (no traceback); the GUI shows it as a
notification. Programming errors stay ordinary exceptions with tracebacks.
"""

from __future__ import annotations


class SpnError(Exception):
    """Base of every error a user can fix; the message says what and how."""


class DatasetError(SpnError):
    """A data set folder (generic or VOC layout) cannot be read as it is."""


class ProjectError(SpnError):
    """A project folder is missing, foreign, from another version, or not ready for a step."""


class WeightsError(SpnError):
    """A weights file is not a usable state dict for the chosen model."""
