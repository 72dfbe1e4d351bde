"""User-facing errors: the CLI prints their one-paragraph message and exits 2 instead of a traceback."""
from __future__ import annotations


class UserError(Exception):
    """Something the user can fix (a path, a flag, a file); the message names it and says how."""


class DataError(UserError):
    """A missing or malformed dataset file or tree."""


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, unsafe, or from another task, stage or vocabulary."""


DATA_GUIDE = "See 'Data' in README.md for the expected tree, or run on the built-in demo with --DATASET easyvqa."
