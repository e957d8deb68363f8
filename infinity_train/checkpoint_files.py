"""Reading checkpoint files someone else may have written, without running their code.

``torch.distributed.checkpoint`` keeps its index (``dcp/.metadata``) as a plain pickle and reads the
non-tensor entries of its ``.distcp`` shards with ``torch.load(weights_only=False)``; DeepSpeed reads its
``*.pt`` files with ``torch.load(weights_only=False)`` too. A crafted file in any of them would run code the
moment it is loaded. Every checkpoint is therefore checked here first:

* ``.metadata`` is read by :class:`MetadataUnpickler`, which resolves only the classes DCP's metadata is
  made of (allow-listed by module and name) and refuses every other global, so nothing is called but those
  constructors; DCP itself is then handed a reader that uses the same unpickler (:class:`SafeFileSystemReader`)
  and a planner that reads non-tensor entries with ``torch.load(weights_only=True)`` (:class:`SafeLoadPlanner`).
* DeepSpeed's files are loaded once with ``torch.load(weights_only=True)``, allowing only the few DeepSpeed
  and Python classes its own checkpoints hold, before DeepSpeed is allowed to open them.
* rank files (``ranks/rank00000.pt``) are read with ``torch.load(weights_only=True)``.

A refused or damaged file raises :class:`UnsafeCheckpoint` / :class:`DamagedCheckpoint`: one line naming the file
and what is wrong.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch


class CheckpointFileError(ValueError):
    """A checkpoint file that cannot be used, phrased as one line naming it."""


class UnsafeCheckpoint(CheckpointFileError):
    """A file that asks for code this project does not allow a checkpoint to run."""


class DamagedCheckpoint(CheckpointFileError):
    """A file that is missing, truncated or not what its name says."""


# The globals a torch.distributed.checkpoint ``.metadata`` pickle refers to (found from the pickles this
# project writes: single-process, FSDP2 and replicated saves), plus torch's dtypes (checked below).
METADATA_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("torch.distributed.checkpoint.metadata", "Metadata"),
    ("torch.distributed.checkpoint.metadata", "MetadataIndex"),
    ("torch.distributed.checkpoint.metadata", "StorageMeta"),
    ("torch.distributed.checkpoint.metadata", "TensorProperties"),
    ("torch.distributed.checkpoint.metadata", "TensorStorageMetadata"),
    ("torch.distributed.checkpoint.metadata", "BytesStorageMetadata"),
    ("torch.distributed.checkpoint.metadata", "ChunkStorageMetadata"),
    ("torch.distributed.checkpoint.metadata", "_MEM_FORMAT_ENCODING"),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch.serialization", "_get_layout"),
    ("torch", "Size"),
    ("pathlib", "PosixPath"),
    ("pathlib", "PurePosixPath"),
    ("collections", "OrderedDict"),
})


def _is_dtype(module: str, name: str) -> bool:
    return module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)


class MetadataUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`METADATA_GLOBALS` (and torch dtypes); anything else is refused
    before it is imported, let alone called."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in METADATA_GLOBALS or _is_dtype(module, name):
            return super().find_class(module, name)
        raise UnsafeCheckpoint(
            f"{self.source}: refused: the pickle asks for {module}.{name}, which is not part of a checkpoint's metadata "
            "(a crafted file would run code here); it was not loaded"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpoint(f"{self.source}: refused: a checkpoint's metadata holds no persistent references")


def read_dcp_metadata(path: str | Path) -> Any:
    """The ``Metadata`` of a DCP directory's (or a ``.metadata`` file's) index, read without running any code."""
    from torch.distributed.checkpoint.metadata import Metadata

    path = Path(path)
    file = path / ".metadata" if path.is_dir() else path
    if not file.is_file():
        raise DamagedCheckpoint(f"{file}: missing: the checkpoint has no DCP index (it was cut short or is damaged)")
    try:
        with file.open("rb") as f:
            metadata = MetadataUnpickler(f, str(file)).load()
    except CheckpointFileError:
        raise
    except Exception as error:  # truncated or garbage bytes: pickle raises several types
        raise DamagedCheckpoint(f"{file}: damaged DCP index ({type(error).__name__}: {' '.join(str(error).split())[:200]})") from None
    if not isinstance(metadata, Metadata):
        raise DamagedCheckpoint(f"{file}: not a DCP index (it holds a {type(metadata).__name__})")
    return metadata


def check_dcp_directory(path: str | Path) -> Any:
    """Check a DCP directory before torch.distributed.checkpoint opens it: a safe index, and every shard it
    names present and at least as long as the index says. Returns the metadata."""
    path = Path(path)
    if not path.is_dir():
        raise DamagedCheckpoint(f"{path}: missing: the checkpoint has no dcp/ directory (it was cut short or is damaged)")
    metadata = read_dcp_metadata(path)
    needed: dict[str, int] = {}
    for info in (metadata.storage_data or {}).values():
        relative = str(getattr(info, "relative_path", ""))
        end = int(getattr(info, "offset", 0)) + int(getattr(info, "length", 0))
        if not relative or "/" in relative or relative.startswith("."):
            raise UnsafeCheckpoint(f"{path / '.metadata'}: refused: it names a shard outside its directory ({relative!r})")
        needed[relative] = max(needed.get(relative, 0), end)
    for relative, end in sorted(needed.items()):
        shard = path / relative
        if not shard.is_file():
            raise DamagedCheckpoint(f"{shard}: missing: the checkpoint index names it but it is not there")
        size = shard.stat().st_size
        if size < end:
            raise DamagedCheckpoint(f"{shard}: truncated ({size} bytes, the index needs {end})")
    return metadata


def _dcp_reader_classes() -> tuple[type, type, type]:
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint._traverse import set_element
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner, _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.metadata import StorageMeta
    from torch.distributed.checkpoint.planner import ReadItem

    class _SafeFileSystemReader(FileSystemReader):
        """DCP's file reader, reading the index with :class:`MetadataUnpickler`."""

        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            rank = kwargs.get("rank")
            metadata = read_dcp_metadata(Path(self._get_metadata_path(rank)))
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    class _WeightsOnlyBytes:
        """Non-tensor entries read with ``torch.load(weights_only=True)`` (DCP's planner uses weights_only=False)."""

        _source = "checkpoint"

        def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
            try:
                loaded = torch.load(value, weights_only=True)
            except pickle.UnpicklingError as error:
                raise UnsafeCheckpoint(f"{self._source}: refused entry {read_item.dest_index.fqn}: {_refusal(error)}") from None
            if self.flatten_state_dict:  # type: ignore[attr-defined]
                set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], loaded)  # type: ignore[attr-defined]
            else:
                self.state_dict[read_item.dest_index.fqn] = loaded  # type: ignore[attr-defined]

    class _SafeLoadPlanner(_WeightsOnlyBytes, DefaultLoadPlanner):
        pass

    class _SafeWholeLoadPlanner(_WeightsOnlyBytes, _EmptyStateDictLoadPlanner):
        pass

    return _SafeFileSystemReader, _SafeLoadPlanner, _SafeWholeLoadPlanner


def safe_dcp_load(state: dict[str, Any], directory: Path, no_dist: bool) -> None:
    """``dcp.load`` of ``directory`` into ``state`` through the safe reader and planner (after checking it).
    An empty ``state`` is filled with everything the checkpoint holds."""
    import torch.distributed.checkpoint as dcp

    check_dcp_directory(directory)
    reader_class, planner_class, whole_class = _dcp_reader_classes()
    planner = planner_class() if state else whole_class()
    planner._source = str(directory)
    try:
        dcp.load(state, storage_reader=reader_class(str(directory)), planner=planner, no_dist=no_dist)
        if not state:  # the planner built the state from the index (dcp.load works on its own copy of the dict)
            state.update(planner.original_state_dict)
    except CheckpointFileError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # DCP wraps each rank's failure in a CheckpointException (a BaseException)
        wrapped = _unwrap(error)
        if isinstance(wrapped, CheckpointFileError):
            raise wrapped from None
        if isinstance(wrapped, (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError)):
            raise DamagedCheckpoint(f"{directory}: damaged shard ({type(wrapped).__name__}: {_first_line(wrapped)})") from None
        raise


def _unwrap(error: BaseException) -> BaseException:
    """The first exception DCP wrapped in its CheckpointException (one per rank), else ``error``."""
    failures = getattr(error, "failures", None)
    if isinstance(failures, dict):
        for value in failures.values():
            inner = value[0] if isinstance(value, tuple) else value
            if isinstance(inner, BaseException):
                return inner
    return error


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:300] if text else type(error).__name__


def load_rank_file(path: Path) -> dict[str, Any]:
    """A checkpoint's per-rank state (data reader position, RNG states), read with ``weights_only=True``."""
    if not path.is_file():
        raise DamagedCheckpoint(f"{path}: missing: the checkpoint has no state for this rank")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpoint(f"{path}: refused: {_refusal(error)}") from None
    except Exception as error:
        raise DamagedCheckpoint(f"{path}: damaged ({type(error).__name__}: {_first_line(error)})") from None
    if not isinstance(state, dict) or not {"reader", "rng"} <= state.keys():
        raise DamagedCheckpoint(f"{path}: not a rank state file (no reader position and RNG states)")
    return state


def _refusal(error: BaseException) -> str:
    """torch's weights_only message, cut to the global it refused."""
    text = " ".join(str(error).split())
    match = re.search(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)", text)
    if match:
        return f"it asks for {match.group(1)}, which a weights-only load does not allow (a crafted file would run code here); it was not loaded"
    detail = text.split("Do it only if you got the file from a trusted source.")[-1].split("Check the documentation")[0].strip()
    return f"not loadable with weights_only=True ({(detail or text)[:200]}); it was not loaded"


# What DeepSpeed's own checkpoint files hold besides tensors and plain containers (found from the ZeRO-2
# and ZeRO-3 checkpoints this project writes). Everything else is refused before DeepSpeed sees the file.
def _deepspeed_safe_globals() -> list[Any]:
    allowed: list[Any] = []
    try:
        from deepspeed.runtime.fp16.loss_scaler import LossScaler, DynamicLossScaler

        allowed += [LossScaler, DynamicLossScaler]
    except Exception:  # pragma: no cover - DeepSpeed missing: its runs cannot start anyway
        pass
    try:
        from deepspeed.runtime.zero.config import ZeroStageEnum

        allowed.append(ZeroStageEnum)
    except Exception:  # pragma: no cover
        pass
    try:
        from deepspeed.utils.tensor_fragment import fragment_address

        allowed.append(fragment_address)
    except Exception:  # pragma: no cover
        pass
    return allowed


def check_deepspeed_directory(path: Path) -> None:
    """Every ``*.pt`` of a DeepSpeed checkpoint loads with ``weights_only=True`` (narrow safe globals) before
    DeepSpeed, which reads them with ``weights_only=False``, may open them."""
    if not path.is_dir():
        raise DamagedCheckpoint(f"{path}: missing: the checkpoint has no deepspeed/ directory (it was cut short or is damaged)")
    files = sorted(p for p in path.rglob("*") if p.is_file())
    if not any(p.suffix == ".pt" for p in files):
        raise DamagedCheckpoint(f"{path}: no DeepSpeed state files in it")
    safe = _deepspeed_safe_globals()
    for file in files:
        if file.suffix != ".pt":
            continue
        try:
            with torch.serialization.safe_globals(safe):
                torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except pickle.UnpicklingError as error:
            raise UnsafeCheckpoint(f"{file}: refused: {_refusal(error)}") from None
        except Exception as error:
            raise DamagedCheckpoint(f"{file}: damaged ({type(error).__name__}: {_first_line(error)})") from None
