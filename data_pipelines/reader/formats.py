"""Sample formats: how raw tar members become bucketable samples and samples become a batch.

Everything else of the reader (shard plans, node/worker split, shuffling, bucketing, resume,
counters) does not depend on what a sample holds. The image format reads encoded images and
captions; the cached format (data_pipelines.cache) reads precomputed latents, bits and text
embeddings. A format must be picklable: DataLoader workers receive it with the dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .batches import BatchMaker
from .bucketing import BatchPlan
from .config import ReaderConfig
from .samples import prepare_sample
from .stats import ReaderCounters
from .tar_stream import KEPT_EXTENSIONS, RawSample


class Bucketable(Protocol):
    key: str
    url: str
    template: float


class BatchBuilder(Protocol):
    def make(self, plan: BatchPlan) -> dict[str, Any]: ...

    def remember(self, plan: BatchPlan) -> None:
        """A plan passed over while resuming (a builder may keep it for fallbacks)."""


class SampleFormat(Protocol):
    name: str

    @property
    def kept_extensions(self) -> frozenset[str]: ...

    def prepare(self, raw: RawSample, templates: Sequence[float], counters: ReaderCounters) -> Bucketable | None:
        """The checked sample, or None after counting its skip reason. Must be cheap and must depend
        only on the sample: a resumed reader replays it to land on the same batches."""

    def batch_builder(self, config: ReaderConfig, epoch: int, counters: ReaderCounters) -> BatchBuilder: ...


@dataclass(frozen=True)
class ImageFormat:
    """Encoded images with captions: batches of decoded, resized pixels (see batches.BatchMaker)."""

    name: str = "images"

    @property
    def kept_extensions(self) -> frozenset[str]:
        return KEPT_EXTENSIONS

    def prepare(self, raw: RawSample, templates: Sequence[float], counters: ReaderCounters) -> Bucketable | None:
        return prepare_sample(raw, templates, counters)

    def batch_builder(self, config: ReaderConfig, epoch: int, counters: ReaderCounters) -> BatchBuilder:
        return BatchMaker(config, epoch, counters)


IMAGE_FORMAT = ImageFormat()
