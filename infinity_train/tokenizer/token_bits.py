"""The token-bits interface every tokenizer kind shares: schedules, bits <-> latents <-> images.

A tokenizer provides ``d``, ``patchify``, ``encode`` (image -> latent F) and ``decode`` (latent -> image);
this mixin turns those into per-scale token bits with the project's one multi-scale BSQ quantizer
(``quantizer.encode_bits`` / ``bits_to_latent``), so the learned autoencoder (``BitwiseTokenizer``) and the
fitted stand-in (``PcaTokenizer``) quantize, decode and read schedules the same way.
"""

from __future__ import annotations

from typing import Sequence

import torch

from infinity_train.geometry import PATCH_PIXELS, PATCHIFY_FACTOR, Schedule, bits_per_token, latent_schedule
from infinity_train.tokenizer.autoencoder import check_image
from infinity_train.tokenizer.ops import patchify_bits, unpatchify_bits
from infinity_train.tokenizer.quantizer import bits_to_latent, check_schedule, encode_bits, schedule_for_grid


class TokenBits:
    """Mixed into a tokenizer class that defines ``d``, ``patchify``, ``encode`` and ``decode``."""

    d: int
    patchify: bool

    # ------------------------------------------------------------ geometry

    @property
    def token_dim(self) -> int:
        """Bits per token the transformer predicts: d, or 4d with patchify."""
        return bits_per_token(self.d, self.patchify)

    def latent_schedule(self, token_schedule: Schedule) -> tuple[tuple[int, int], ...]:
        return latent_schedule(token_schedule, self.patchify)

    def token_schedule_for(self, image: torch.Tensor) -> tuple[tuple[int, int], ...]:
        """The published schedule whose last grid covers this image (clear error if none)."""
        check_image(image, PATCH_PIXELS)
        return schedule_for_grid((image.shape[-2] // PATCH_PIXELS, image.shape[-1] // PATCH_PIXELS))

    def _latent_schedule_for(self, latent: torch.Tensor, token_schedule: Schedule | None) -> tuple[tuple[int, int], ...]:
        if token_schedule is None:
            factor = PATCHIFY_FACTOR if self.patchify else 1
            if latent.shape[-2] % factor or latent.shape[-1] % factor:
                raise ValueError(f"a patchified latent grid must be even, got {tuple(latent.shape[-2:])}")
            token_schedule = schedule_for_grid((latent.shape[-2] // factor, latent.shape[-1] // factor))
        return check_schedule(self.latent_schedule(token_schedule), latent.shape[-2:])

    # ------------------------------------------------------------ bits

    def latent_to_bits(self, latent: torch.Tensor, token_schedule: Schedule | None = None) -> list[torch.Tensor]:
        """Per-scale token bits (B, h_k, w_k, token_dim) bool."""
        bits = encode_bits(latent, self._latent_schedule_for(latent, token_schedule))
        return [patchify_bits(b) for b in bits] if self.patchify else bits

    @torch.no_grad()
    def image_to_bits(self, image: torch.Tensor, token_schedule: Schedule | None = None) -> list[torch.Tensor]:
        return self.latent_to_bits(self.encode(image), token_schedule)

    def bits_to_latent(self, token_bits: Sequence[torch.Tensor], token_schedule: Schedule) -> torch.Tensor:
        """Sum of upsampled codes (B, d, H, W) of per-scale token bits (a prefix of the schedule is allowed)."""
        bits = [unpatchify_bits(b) for b in token_bits] if self.patchify else list(token_bits)
        for k, b in enumerate(bits):
            if b.shape[-1] != self.d:
                raise ValueError(f"scale {k}: bits have {b.shape[-1]} channels, this tokenizer has d={self.d}")
        latent_schedule = self.latent_schedule(token_schedule)
        return bits_to_latent(bits, latent_schedule, latent_schedule[-1])

    @torch.no_grad()
    def bits_to_image(self, token_bits: Sequence[torch.Tensor], token_schedule: Schedule) -> torch.Tensor:
        return self.decode(self.bits_to_latent(token_bits, token_schedule))
