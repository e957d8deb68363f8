"""The bitwise tokenizer: CNN encoder + multi-scale BSQ + CNN decoder.

Schedules passed to this class are *token* schedules (``infinity_train.geometry``): one token
covers 16x16 pixels. With ``patchify`` the latent has stride 8, the quantizer runs on the
doubled grids and each token carries the 2x2 latent positions it covers (4d bits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn as nn

from infinity_train.geometry import check_d
from infinity_train.tokenizer.autoencoder import Decoder, Encoder
from infinity_train.tokenizer.quantizer import MultiScaleBSQ, QuantizerOutput, Schedule
from infinity_train.tokenizer.token_bits import TokenBits

REG_VARIANT = {"drop_trailing_prob": 0.1, "num_partial_scales": 1}
"""Quantizer settings of the "reg" variant: how often trailing scales are dropped, and how many
early-scale partial sums are decoded per step. Project choices; the reference does not publish them."""


class LatentLayerNorm(nn.Module):
    """LayerNorm over the d channels of each latent position, weight initialized to 1/sqrt(d).

    BSQ codes have norm 1 and the residual scheme subtracts them from the raw latent, while nothing
    in the losses bounds the latent's norm (each scale's residual is L2-normalized before its sign is
    taken). If the latent drifts to a norm much larger than 1, every scale repeats the signs of the
    first and the token grid carries only d bits per image. This layer pins each position's latent
    to norm ~1 at the start of training; it is the reference's optional ``ln_before_quant`` with
    ``ln_init_by_sqrt`` (same keys, ``quantizer.layernorm.*``). The released checkpoints do not use it.
    """

    def __init__(self, d: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((d,), d**-0.5))
        self.bias = nn.Parameter(torch.zeros(d))
        self.eps = eps

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = latent.permute(0, 2, 3, 1)
        x = torch.nn.functional.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


@dataclass
class TokenizerOutput:
    reconstruction: torch.Tensor
    """Decoded image (B, 3, H, W), not clamped (losses see the raw decoder output)."""
    quantizer: QuantizerOutput
    partial_reconstructions: dict[int, torch.Tensor] = field(default_factory=dict)
    """Scale index k -> decoded partial sum of scales 0..k (reg variant)."""


class BitwiseTokenizer(TokenBits, nn.Module):
    kind = "bsq"  # tokenizer.kind of the learned CNN autoencoder (the other kind: pca_tokenizer.PcaTokenizer)

    def __init__(
        self,
        d: int,
        base_channels: int = 128,
        channel_multipliers: Sequence[int] = (1, 2, 4, 4, 4),
        encoder_res_blocks: int = 2,
        decoder_res_blocks: int = 3,
        patchify: bool = False,
        drop_trailing_prob: float = 0.0,
        num_partial_scales: int = 0,
        inv_temperature: float = 100.0,
        diversity_gamma: float = 1.0,
        latent_layernorm: bool = False,
    ) -> None:
        super().__init__()
        self.d = check_d(d)
        self.patchify = patchify
        self.encoder = Encoder(d, base_channels, channel_multipliers, encoder_res_blocks, patchify)
        self.decoder = Decoder(d, base_channels, channel_multipliers, decoder_res_blocks, patchify)
        self.quantizer = MultiScaleBSQ(d, inv_temperature, diversity_gamma, drop_trailing_prob, num_partial_scales)
        # Registered under the quantizer so the keys are the reference's ``quantizer.layernorm.*``.
        self.quantizer.layernorm = LatentLayerNorm(d) if latent_layernorm else nn.Identity()
        self.architecture = {
            "d": d,
            "base_channels": base_channels,
            "channel_multipliers": tuple(channel_multipliers),
            "encoder_res_blocks": encoder_res_blocks,
            "decoder_res_blocks": decoder_res_blocks,
            "patchify": patchify,
            "latent_layernorm": latent_layernorm,
        }

    def repeated_units(self) -> list[nn.ModuleList]:
        """The encoder's and decoder's resolution levels: checkpointed, compiled and sharded one by one."""
        return [self.encoder.down, self.decoder.up]

    @classmethod
    def from_config(cls, config: Any) -> "BitwiseTokenizer":
        """Build from an object with the fields of the tokenizer config (d, base_channels, ...)."""
        loss = getattr(config, "loss", None)
        reg = REG_VARIANT if loss is not None and getattr(loss, "reg", False) else {}
        return cls(
            d=config.d,
            base_channels=config.base_channels,
            channel_multipliers=tuple(config.channel_multipliers),
            encoder_res_blocks=config.encoder_res_blocks,
            decoder_res_blocks=config.decoder_res_blocks,
            patchify=config.patchify,
            latent_layernorm=config.latent_layernorm,
            **reg,
        )

    # ------------------------------------------------------------ geometry

    @property
    def stride(self) -> int:
        """Pixels per latent position."""
        return self.encoder.stride

    # ------------------------------------------------------------ image <-> latent

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, H, W) in [-1, 1] -> continuous latent F (B, d, H/stride, W/stride), after the
        latent LayerNorm when the tokenizer has one."""
        return self.quantizer.layernorm(self.encoder(image))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent (B, d, h, w) -> image clamped to [-1, 1]."""
        return self.decoder(latent).clamp(-1.0, 1.0)

    latent_to_image = decode

    # ------------------------------------------------------------ training

    def forward(
        self, image: torch.Tensor, token_schedule: Schedule | None = None, generator: torch.Generator | None = None
    ) -> TokenizerOutput:
        latent = self.encode(image)
        quantized = self.quantizer(latent, self._latent_schedule_for(latent, token_schedule), generator)
        partial = {k: self.decoder(z) for k, z in quantized.partial_latents.items()}
        return TokenizerOutput(self.decoder(quantized.latent), quantized, partial)
