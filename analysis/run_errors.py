"""The one error raised for run directories that cannot be read (always one line naming the file)."""
from __future__ import annotations


class RunDataError(ValueError):
    """A runs folder, run directory or one of its files cannot be read as given."""
