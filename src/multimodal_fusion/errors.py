"""The error a user can fix: bad input data or configuration.

Nodes and datasets raise :class:`UserInputError` when the run cannot go on
because of what the user gave it (a file without the required columns, too few
classes, an empty split, ...). Its message says what is wrong and what to do.
:mod:`multimodal_fusion.hooks` ends a ``kedro run`` that fails on one with that
message alone; the traceback goes to the log file. Any other exception is a bug
and keeps its traceback on the console.
"""

from __future__ import annotations

from kedro.io import DatasetError


class UserInputError(ValueError):
    """The input data or configuration is wrong; the message says how to fix it."""


class UnreadableFileError(DatasetError, UserInputError):
    """A raw file that cannot be read at all (a dataset's load); the message
    names the file, the line and the fix."""
