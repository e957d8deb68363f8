"""CNN encoder and decoder of the bitwise tokenizer (no attention).

Module and parameter names follow the public reference tokenizer's state-dict layout
(``encoder.down.0.block.1.norm1.norm.weight``, ``decoder.up.3.upsample.conv.conv.weight``, ...)
so that its checkpoints load strictly; the code itself is this project's own.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from infinity_train.geometry import latent_stride

MAX_GROUPS = 32
NORM_EPS = 1e-6
IMAGE_CHANNELS = 3


def group_count(channels: int) -> int:
    """GroupNorm groups: the largest divisor of ``channels`` that is at most 32.

    Every multiple of 32 gets 32 groups (the reference setting); small or odd widths in
    debug models (e.g. 16 -> 16, 48 -> 24, 40 -> 20) still normalize groups of equal size.
    """
    return max(g for g in range(1, min(MAX_GROUPS, channels) + 1) if channels % g == 0)


class NormLayer(nn.Module):
    """GroupNorm kept under an inner ``norm`` attribute (checkpoint key layout)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(group_count(channels), channels, eps=NORM_EPS, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class ConvLayer(nn.Module):
    """Conv2d kept under an inner ``conv`` attribute (checkpoint key layout)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = NormLayer(in_channels)
        self.conv1 = ConvLayer(in_channels, out_channels, 3, padding=1)
        self.norm2 = NormLayer(out_channels)
        self.conv2 = ConvLayer(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = ConvLayer(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return shortcut + h


class Downsample(nn.Module):
    """Stride-2 3x3 conv; padding only on the bottom/right so an even input halves exactly."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = ConvLayer(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour 2x followed by a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = ConvLayer(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MidBlocks(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block_1 = ResBlock(channels, channels)
        self.block_2 = ResBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.block_1(x))


class Level(nn.Module):
    """One resolution level: res blocks, then an optional resampling (``downsample`` or ``upsample``)."""

    def __init__(self, channels_in: int, channels_out: int, num_blocks: int, resample: nn.Module | None, resample_name: str) -> None:
        super().__init__()
        widths = [channels_in] + [channels_out] * num_blocks
        self.block = nn.ModuleList(ResBlock(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.resample_name = resample_name
        if resample is not None:
            setattr(self, resample_name, resample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        resample = getattr(self, self.resample_name, None)
        return resample(x) if resample is not None else x


def _num_resamplings(channel_multipliers: Sequence[int], patchify: bool, num_res_blocks: int) -> int:
    if num_res_blocks < 1:
        raise ValueError(f"each level needs at least one res block, got {num_res_blocks}")
    count = int(math.log2(latent_stride(patchify)))
    if len(channel_multipliers) < count + 1:
        raise ValueError(
            f"channel_multipliers {list(channel_multipliers)} give {len(channel_multipliers)} levels; "
            f"a latent stride of {latent_stride(patchify)} needs at least {count + 1}"
        )
    return count


class Encoder(nn.Module):
    """Image (B, 3, H, W) in [-1, 1] -> latent (B, d, H/s, W/s), s = 16 (or 8 with patchify)."""

    def __init__(
        self,
        d: int,
        base_channels: int = 128,
        channel_multipliers: Sequence[int] = (1, 2, 4, 4, 4),
        num_res_blocks: int = 2,
        patchify: bool = False,
    ) -> None:
        super().__init__()
        self.d = d
        self.stride = latent_stride(patchify)
        num_down = _num_resamplings(channel_multipliers, patchify, num_res_blocks)
        widths = [base_channels * m for m in channel_multipliers]
        self.conv_in = ConvLayer(IMAGE_CHANNELS, base_channels, 3, padding=1)
        levels, channels = [], base_channels
        for i, width in enumerate(widths):
            levels.append(Level(channels, width, num_res_blocks, Downsample(width) if i < num_down else None, "downsample"))
            channels = width
        self.down = nn.ModuleList(levels)
        self.mid = MidBlocks(channels)
        self.norm_out = NormLayer(channels)
        self.conv_out = ConvLayer(channels, d, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        check_image(image, self.stride)
        h = self.conv_in(image)
        for level in self.down:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latent (B, d, h, w) -> image (B, 3, h*s, w*s); unclamped (clamping is the tokenizer's job)."""

    def __init__(
        self,
        d: int,
        base_channels: int = 128,
        channel_multipliers: Sequence[int] = (1, 2, 4, 4, 4),
        num_res_blocks: int = 3,
        patchify: bool = False,
    ) -> None:
        super().__init__()
        self.d = d
        num_up = _num_resamplings(channel_multipliers, patchify, num_res_blocks)
        widths = [base_channels * m for m in channel_multipliers]
        channels = widths[-1]
        self.conv_in = ConvLayer(d, channels, 3, padding=1)
        self.mid = MidBlocks(channels)
        # Levels are stored in encoder order (index 0 = finest) but run coarsest first;
        # level i upsamples when 1 <= i <= num_up, mirroring the encoder's downsamplings.
        levels: list[Level] = []
        for i in reversed(range(len(widths))):
            upsample = Upsample(widths[i]) if 1 <= i <= num_up else None
            levels.insert(0, Level(channels, widths[i], num_res_blocks, upsample, "upsample"))
            channels = widths[i]
        self.up = nn.ModuleList(levels)
        self.norm_out = NormLayer(channels)
        self.conv_out = ConvLayer(channels, IMAGE_CHANNELS, 3, padding=1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        if latent.ndim != 4 or latent.shape[1] != self.d:
            raise ValueError(f"decoder expects a latent of shape (B, {self.d}, h, w), got {tuple(latent.shape)}")
        h = self.mid(self.conv_in(latent))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def check_image(image: torch.Tensor, stride: int) -> None:
    if image.ndim != 4 or image.shape[1] != IMAGE_CHANNELS:
        raise ValueError(f"expected images of shape (B, {IMAGE_CHANNELS}, H, W), got {tuple(image.shape)}")
    height, width = image.shape[-2:]
    if height % stride or width % stride:
        raise ValueError(f"image size {height}x{width} is not divisible by the tokenizer stride {stride}")
