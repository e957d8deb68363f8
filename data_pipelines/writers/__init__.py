"""Shard writers for your own data: a folder of captioned images, a reference-format manifest, and
in-place validation of existing WebDataset (img2dataset) shards.

    tally = WriteTally()
    result = write_candidates(folder_candidates("photos/", tally), "shards/", "train", 1000, tally,
                              {"source": "folder", "input": "photos/"})
    print(result.summary())
"""

from .folder import folder_candidates
from .keys import KeyMaker, sanitize_key
from .manifest_rows import manifest_candidates
from .output import Candidate, WriteResult, write_candidates
from .tally import SKIP_REASONS, WriteTally
from .validate import ValidationResult, validate_webdataset

__all__ = [
    "SKIP_REASONS",
    "Candidate",
    "KeyMaker",
    "ValidationResult",
    "WriteResult",
    "WriteTally",
    "folder_candidates",
    "manifest_candidates",
    "sanitize_key",
    "validate_webdataset",
    "write_candidates",
]
