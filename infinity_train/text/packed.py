"""Variable-length text embeddings packed without padding (the flash-attention varlen layout)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class PackedText:
    """A batch of B token sequences stored back to back.

    ``tokens[cu_seqlens[i]:cu_seqlens[i + 1]]`` are the tokens of sample ``i``.
    Every sample has at least one token: an all-padding row would make every
    cross-attention weight of that sample undefined.
    """

    tokens: Tensor  # (total_tokens, dim)
    cu_seqlens: Tensor  # (B + 1,) int32, cu_seqlens[0] == 0, cu_seqlens[-1] == total_tokens
    max_seqlen: int

    def __post_init__(self) -> None:
        # Shape and dtype checks only: checking values would force a device sync on every batch.
        if self.tokens.dim() != 2:
            raise ValueError(f"tokens must be (total_tokens, dim), got shape {tuple(self.tokens.shape)}")
        if self.cu_seqlens.dim() != 1 or self.cu_seqlens.numel() < 1:
            raise ValueError(f"cu_seqlens must be (B + 1,), got shape {tuple(self.cu_seqlens.shape)}")
        if self.cu_seqlens.dtype != torch.int32:
            raise ValueError(f"cu_seqlens must be int32, got {self.cu_seqlens.dtype}")

    @property
    def batch_size(self) -> int:
        return self.cu_seqlens.numel() - 1

    def __len__(self) -> int:
        return self.batch_size

    @property
    def dim(self) -> int:
        return self.tokens.shape[1]

    @property
    def total_tokens(self) -> int:
        return self.tokens.shape[0]

    @property
    def lengths(self) -> Tensor:
        """(B,) int32 number of tokens of each sample."""
        return self.cu_seqlens[1:] - self.cu_seqlens[:-1]

    @property
    def dtype(self) -> torch.dtype:
        return self.tokens.dtype

    @property
    def device(self) -> torch.device:
        return self.tokens.device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
           non_blocking: bool = False) -> PackedText:
        """Move tokens and cu_seqlens to ``device``; ``dtype`` casts the tokens only."""
        return PackedText(
            tokens=self.tokens.to(device=device, dtype=dtype, non_blocking=non_blocking),
            cu_seqlens=self.cu_seqlens.to(device=device, non_blocking=non_blocking),
            max_seqlen=self.max_seqlen,
        )

    def split(self) -> list[Tensor]:
        """Per-sample views ``[(len_i, dim), ...]``."""
        return list(torch.split(self.tokens, self.lengths.tolist()))

    def to_padded(self, pad_value: float = 0.0) -> tuple[Tensor, Tensor]:
        """Right-padded ``(B, max_seqlen, dim)`` tokens and the ``(B, max_seqlen)`` bool mask of real tokens."""
        positions = torch.arange(self.max_seqlen, device=self.device)
        mask = positions[None, :] < self.lengths[:, None]
        padded = self.tokens.new_full((self.batch_size, self.max_seqlen, self.dim), pad_value)
        # Row-major order of the mask's True entries is exactly the packing order.
        padded[mask] = self.tokens
        return padded, mask

    @classmethod
    def from_padded(cls, padded: Tensor, mask: Tensor) -> PackedText:
        """Pack ``(B, L, dim)`` tokens, keeping those where ``mask`` (B, L) is true/non-zero, in order.

        ``mask`` is usually a tokenizer attention mask (right padding); any mask works as long as
        every row keeps at least one token.
        """
        if padded.dim() != 3 or mask.shape != padded.shape[:2]:
            raise ValueError(
                f"expected padded (B, L, dim) and mask (B, L), got {tuple(padded.shape)} and {tuple(mask.shape)}"
            )
        keep = mask.to(device=padded.device, dtype=torch.bool)
        lengths = keep.sum(dim=1)
        _require_nonempty(lengths.tolist())
        return cls(
            tokens=padded[keep],
            cu_seqlens=_cumulative(lengths),
            max_seqlen=int(lengths.max()) if lengths.numel() else 0,
        )

    @classmethod
    def cat(cls, packs: Sequence[PackedText]) -> PackedText:
        """Concatenate batches, e.g. conditional + unconditional halves of a CFG-doubled batch."""
        if not packs:
            raise ValueError("PackedText.cat needs at least one PackedText")
        first = packs[0]
        for pack in packs[1:]:
            if pack.dim != first.dim or pack.dtype != first.dtype or pack.device != first.device:
                raise ValueError(
                    "cannot concatenate PackedText with different dim/dtype/device: "
                    f"({first.dim}, {first.dtype}, {first.device}) vs ({pack.dim}, {pack.dtype}, {pack.device})"
                )
        lengths = torch.cat([pack.lengths for pack in packs])
        return cls(
            tokens=torch.cat([pack.tokens for pack in packs]),
            cu_seqlens=_cumulative(lengths),
            max_seqlen=max(pack.max_seqlen for pack in packs),
        )

    def __add__(self, other: PackedText) -> PackedText:
        return PackedText.cat([self, other])


def as_packed_text(text: PackedText | tuple[Tensor, Tensor, int]) -> PackedText:
    """A ``PackedText`` from itself or from a ``(tokens, cu_seqlens, max_seqlen)`` triple (cu_seqlens cast to int32)."""
    if isinstance(text, PackedText):
        return text
    tokens, cu_seqlens, max_seqlen = text
    return PackedText(tokens, cu_seqlens.to(torch.int32), int(max_seqlen))


def pack_embeddings(embeddings: Sequence[Tensor]) -> PackedText:
    """Pack per-sample ``(len_i, dim)`` embeddings (e.g. fp16 ones read from a text-embedding cache).

    The tokens keep the input dtype; all inputs must share dim, dtype and device.
    """
    if not embeddings:
        raise ValueError("pack_embeddings needs at least one (len, dim) tensor")
    first = embeddings[0]
    for index, embedding in enumerate(embeddings):
        if embedding.dim() != 2 or embedding.shape[1] != first.shape[1]:
            raise ValueError(
                f"embedding {index} has shape {tuple(embedding.shape)}; expected (len, {first.shape[1]})"
            )
        if embedding.dtype != first.dtype or embedding.device != first.device:
            raise ValueError(
                f"embedding {index} is {embedding.dtype} on {embedding.device}; "
                f"expected {first.dtype} on {first.device}"
            )
    lengths = [embedding.shape[0] for embedding in embeddings]
    _require_nonempty(lengths)
    return PackedText(
        tokens=torch.cat(list(embeddings)),
        cu_seqlens=_cumulative(torch.tensor(lengths, device=first.device)),
        max_seqlen=max(lengths),
    )


def _cumulative(lengths: Tensor) -> Tensor:
    zero = torch.zeros(1, dtype=torch.int32, device=lengths.device)
    return torch.cat([zero, lengths.cumsum(0).to(torch.int32)])


def _require_nonempty(lengths: list[int]) -> None:
    empty = [index for index, length in enumerate(lengths) if length < 1]
    if empty:
        raise ValueError(f"samples {empty} have no tokens; every sample needs at least one")
