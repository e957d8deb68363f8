"""LPIPS-style perceptual distance over a VGG16 feature network, weights from a local file.

Accepted key layouts (one file or several merged): torchvision's ``vgg16`` (``features.N.*``;
``classifier.*`` is ignored), the LPIPS model (``net.sliceK.N.*`` for the backbone and
``linK.model.1.weight`` for the per-channel heads). Without ``lin*`` heads every channel gets
weight 1 (an uncalibrated LPIPS). Nothing is downloaded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

# VGG16 conv widths, "M" = 2x2 max-pool; indices inside `features` follow torchvision's layout.
VGG16_LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAP_INDICES: tuple[int, ...] = (3, 8, 15, 22, 29)  # after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
TAP_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)
# LPIPS input scaling for images in [-1, 1]
INPUT_SHIFT = (-0.030, -0.088, -0.188)
INPUT_SCALE = (0.458, 0.448, 0.450)


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=False)]
            channels = int(item)
    return nn.Sequential(*layers[: TAP_INDICES[-1] + 1])


class ChannelHead(nn.Module):
    """Non-negative per-channel weights of one tap (LPIPS ``linK.model.1`` layout)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))
        nn.init.ones_(self.model[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def read_weight_files(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> dict[str, torch.Tensor]:
    files = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    merged: dict[str, torch.Tensor] = {}
    for file in map(Path, files):
        if not file.is_file():
            raise FileNotFoundError(f"perceptual network weights not found: {file}")
        from infinity_train.tokenizer.reference import read_weights_file

        state = read_weights_file(file)
        if file.suffix != ".safetensors":
            state = state.get("state_dict", state) if isinstance(state, dict) else state
        merged.update(state)
    return merged


def _canonical(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("classifier."):
            continue
        key = re.sub(r"^net\.slice\d+\.", "features.", key)
        key = re.sub(r"^features\.features\.", "features.", key)
        out[key] = value
    return out


class PerceptualDistance(nn.Module):
    """Frozen LPIPS-style distance; images in [-1, 1]; returns the batch mean."""

    def __init__(self, weights: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> None:
        super().__init__()
        self.features = _vgg16_features()
        for i, channels in enumerate(TAP_CHANNELS):
            self.add_module(f"lin{i}", ChannelHead(channels))
        self.register_buffer("shift", torch.tensor(INPUT_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(INPUT_SCALE).view(1, 3, 1, 1), persistent=False)
        self._load(_canonical(read_weight_files(weights)))
        self.requires_grad_(False)
        self.eval()

    def _load(self, state: dict[str, torch.Tensor]) -> None:
        own = self.state_dict()
        missing = [k for k in own if k.startswith("features.") and k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise ValueError(
                "perceptual weights do not fit a VGG16 feature network: "
                f"missing {missing[:5]} ({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})"
            )
        bad = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if v.shape != own[k].shape]
        if bad:
            raise ValueError(f"perceptual weights have wrong shapes (found vs expected): {bad[:5]}")
        self.load_state_dict(state, strict=False)

    def train(self, mode: bool = True) -> "PerceptualDistance":
        return super().train(False)  # frozen network: always in eval mode

    def _taps(self, image: torch.Tensor) -> list[torch.Tensor]:
        taps, h = [], (image - self.shift) / self.scale
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in TAP_INDICES:
                taps.append(h)
        return taps

    def forward(self, reconstruction: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        total = reconstruction.new_zeros(())
        for i, (a, b) in enumerate(zip(self._taps(reconstruction), self._taps(image))):
            a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
            b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
            head: ChannelHead = getattr(self, f"lin{i}")
            total = total + head((a - b).square()).mean()
        return total
