"""Samples of a folder of images with sidecar captions: ``name.jpg`` + ``name.txt`` and/or
``name.json`` (``long_caption`` / ``caption`` and a short ``text``), in any sub-folder.

Files are taken in sorted order of their relative path, so a folder always gives the same shards.
Hidden files and folders (``.name``) are not read (only noted). Images in formats the reader does not take
(GIF, BMP, TIFF, ...) and images without a caption are skipped and counted; captions without an
image are noted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from data_pipelines.reader.metadata import Captions, MetadataError, caption_fields, parse_json_object

from .keys import KeyMaker
from .output import Candidate
from .tally import WriteTally

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
OTHER_IMAGE_SUFFIXES = (".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif")
CAPTION_SUFFIXES = (".txt", ".json")


def folder_candidates(root: str | os.PathLike, tally: WriteTally) -> Iterator[Candidate]:
    """Candidates of the folder's images; a missing folder fails now, before anything is written."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {root}")
    return _candidates(root, tally)


def _candidates(root: Path, tally: WriteTally) -> Iterator[Candidate]:
    keys = KeyMaker()
    for stem, files in _grouped_files(root, tally):
        images = [files[s] for s in IMAGE_SUFFIXES if s in files]
        for suffix in OTHER_IMAGE_SUFFIXES:
            if suffix in files:
                tally.skip("unsupported_format", _relative(files[suffix], root), f"{suffix} files are not read")
        if not images:
            if any(s in files for s in CAPTION_SUFFIXES) and not any(s in files for s in OTHER_IMAGE_SUFFIXES):
                tally.note("caption_without_image", stem)
            continue
        try:
            captions = _sidecar_captions(files)
        except MetadataError as error:
            for image in images:
                tally.skip(error.reason, _relative(image, root), error)
            continue
        for image in images:
            relative = _relative(image, root)
            yield Candidate(key=keys.make(relative), where=relative, source=relative, read_image=image.read_bytes, captions=captions)


def _grouped_files(root: Path, tally: WriteTally) -> list[tuple[str, dict[str, Path]]]:
    """(relative path without suffix, {lower-case suffix: file}) for every non-hidden file, sorted."""
    groups: dict[str, dict[str, Path]] = {}
    for directory, subdirectories, names in os.walk(root):
        for hidden in sorted(n for n in (*subdirectories, *names) if n.startswith(".")):
            tally.note("hidden_ignored", Path(directory, hidden).relative_to(root).as_posix())
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in sorted(names):
            path = Path(directory, name)
            if name.startswith(".") or not path.is_file():
                continue
            relative = path.relative_to(root).as_posix()
            suffix = path.suffix.lower()
            stem = relative[: len(relative) - len(suffix)] if suffix else relative
            groups.setdefault(stem, {}).setdefault(suffix, path)
    return sorted(groups.items())


def _sidecar_captions(files: dict[str, Path]) -> Captions:
    try:
        metadata = parse_json_object(files[".json"].read_bytes()) if ".json" in files else {}
        text = files[".txt"].read_bytes() if ".txt" in files else None
    except OSError as error:
        raise MetadataError("invalid_caption", f"caption file unreadable: {error}") from None
    return caption_fields(metadata, text)


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
