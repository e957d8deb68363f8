"""Patch discriminator, GAN objectives (hinge, non-saturating) and LeCam regularization."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from infinity_train.tokenizer.autoencoder import group_count

GAN_KINDS = ("hinge", "non_saturating")


class PatchDiscriminator(nn.Module):
    """PatchGAN: stride-2 4x4 convs doubling the width (capped at 8x), one stride-1 conv, then a
    1-channel map of per-patch logits. GroupNorm instead of BatchNorm so data-parallel runs need
    no synchronized statistics."""

    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = channels
        for n in range(1, num_layers + 1):
            out = channels * min(2**n, 8)
            stride = 2 if n < num_layers else 1
            layers += [nn.Conv2d(width, out, 4, stride=stride, padding=1), nn.GroupNorm(group_count(out), out), nn.LeakyReLU(0.2)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)

    def repeated_units(self) -> list[nn.ModuleList]:
        """None: a few convolutions, sharded as one unit."""
        return []

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.layers(image)


def check_gan_kind(kind: str) -> str:
    if kind not in GAN_KINDS:
        raise ValueError(f"unknown GAN loss {kind!r}; choose one of {', '.join(GAN_KINDS)}")
    return kind


def discriminator_objective(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    if check_gan_kind(kind) == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_objective(fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    if check_gan_kind(kind) == "hinge":
        return -fake_logits.mean()
    return F.softplus(-fake_logits).mean()


class LeCam(nn.Module):
    """LeCam regularizer: keeps the discriminator's real and fake logits near the EMA of the other side,
    ``mean(relu(real - ema_fake)^2) + mean(relu(ema_real - fake)^2)``."""

    def __init__(self, decay: float = 0.999) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def _update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> None:
        real, fake = real_logits.float().mean(), fake_logits.float().mean()
        if not bool(self.initialized):
            self.ema_real.copy_(real)
            self.ema_fake.copy_(fake)
            self.initialized.fill_(True)
        else:
            self.ema_real.lerp_(real, 1 - self.decay)
            self.ema_fake.lerp_(fake, 1 - self.decay)

    def forward(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._update(real_logits, fake_logits)
        return F.relu(real_logits - self.ema_fake).square().mean() + F.relu(self.ema_real - fake_logits).square().mean()
