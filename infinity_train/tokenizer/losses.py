"""Tokenizer training objective.

Generator side:
    l1 * |x - x_hat| + perceptual * LPIPS(x_hat, x) + gan * G(x_hat)   [from ``gan_start_step`` on]
    + quantizer * (commitment_beta * commitment + entropy * entropy_penalty)
    + reg_partial * mean_k |x - decode(partial sum up to scale k)|     [reg variant]
Discriminator side (from ``gan_start_step`` on): D objective + lecam * LeCam.
As in the reference, the entropy term sits inside the quantizer term (its weight multiplies both).
Argument names match the tokenizer loss config, so ``TokenizerLoss(**config)`` works.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from infinity_train.tokenizer.bitwise_tokenizer import TokenizerOutput
from infinity_train.tokenizer.discriminator import LeCam, PatchDiscriminator, check_gan_kind, discriminator_objective, generator_objective
from infinity_train.tokenizer.perceptual import PerceptualDistance
from infinity_train.tokenizer.quantizer import commitment_loss, entropy_penalty

__all__ = ["LossTerms", "TokenizerLoss", "commitment_loss", "entropy_penalty", "reconstruction_l1"]


def reconstruction_l1(reconstruction: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(reconstruction.float(), image.float())


@dataclass
class LossTerms:
    total: torch.Tensor
    """Weighted sum to back-propagate."""
    terms: dict[str, torch.Tensor]
    """Unweighted terms, detached, for logging."""


class TokenizerLoss(nn.Module):
    def __init__(
        self,
        l1: float = 1.0,
        perceptual: float = 1.0,
        perceptual_weights: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        gan: float = 0.3,
        gan_kind: str = "hinge",
        gan_start_step: int = 2000,
        lecam: float = 0.001,
        quantizer: float = 4.0,
        entropy: float = 0.1,
        reg: bool = False,
        commitment_beta: float = 0.25,
        reg_partial: float = 1.0,
        disc_channels: int = 64,
        disc_layers: int = 3,
        lecam_decay: float = 0.999,
    ) -> None:
        super().__init__()
        if perceptual > 0 and perceptual_weights is None:
            raise ValueError(
                f"perceptual loss weight is {perceptual} but no perceptual_weights file was given: "
                "pass a VGG16 (optionally LPIPS) weights file, or set the perceptual weight to 0"
            )
        self.weights = {"l1": l1, "perceptual": perceptual, "gan": gan, "lecam": lecam, "quantizer": quantizer, "entropy": entropy}
        self.commitment_beta = commitment_beta
        self.reg = reg
        self.reg_partial = reg_partial
        self.gan_kind = check_gan_kind(gan_kind)
        self.gan_start_step = gan_start_step
        self.perceptual_distance = PerceptualDistance(perceptual_weights) if perceptual > 0 else None
        self.discriminator = PatchDiscriminator(channels=disc_channels, num_layers=disc_layers) if gan > 0 else None
        self.lecam = LeCam(lecam_decay) if gan > 0 and lecam > 0 else None

    def gan_active(self, step: int) -> bool:
        """Whether the adversarial terms (and the discriminator's update) are on at ``step``."""
        return self.discriminator is not None and step >= self.gan_start_step

    def generator_loss(self, image: torch.Tensor, output: TokenizerOutput, step: int) -> LossTerms:
        w = self.weights
        recon = output.reconstruction
        terms: dict[str, torch.Tensor] = {"l1": reconstruction_l1(recon, image)}
        total = w["l1"] * terms["l1"]
        if self.perceptual_distance is not None:
            terms["perceptual"] = self.perceptual_distance(recon.float(), image.float())
            total = total + w["perceptual"] * terms["perceptual"]
        terms["commitment"] = output.quantizer.commitment
        terms["entropy"] = output.quantizer.entropy
        total = total + w["quantizer"] * (self.commitment_beta * terms["commitment"] + w["entropy"] * terms["entropy"])
        if self.gan_active(step):
            assert self.discriminator is not None
            terms["gan"] = generator_objective(self.discriminator(recon), self.gan_kind)
            total = total + w["gan"] * terms["gan"]
        if self.reg and output.partial_reconstructions:
            partial = torch.stack([reconstruction_l1(x, image) for x in output.partial_reconstructions.values()]).mean()
            terms["reg_partial_l1"] = partial
            total = total + self.reg_partial * partial
        return LossTerms(total, {k: v.detach() for k, v in terms.items()})

    def discriminator_loss(
        self, image: torch.Tensor, reconstruction: torch.Tensor, step: int, discriminator: nn.Module | None = None
    ) -> LossTerms:
        """Discriminator objective; zero (no graph) before ``gan_start_step``: skip its backward then.

        ``discriminator`` is the module to call (a data-parallel wrapper of ``self.discriminator``,
        so that its gradients are synchronized); real and fake images go through it in one batch.
        """
        if not self.gan_active(step):
            zero = image.new_zeros((), dtype=torch.float32)
            return LossTerms(zero, {"discriminator": zero})
        assert self.discriminator is not None
        discriminator = discriminator or self.discriminator
        logits = discriminator(torch.cat((image, reconstruction.detach().to(image.dtype)))).float()
        real_logits, fake_logits = logits.chunk(2)
        terms = {"discriminator": discriminator_objective(real_logits, fake_logits, self.gan_kind)}
        total = terms["discriminator"]
        if self.lecam is not None:
            terms["lecam"] = self.lecam(real_logits, fake_logits)
            total = total + self.weights["lecam"] * terms["lecam"]
        terms["logits_real"] = real_logits.mean()
        terms["logits_fake"] = fake_logits.mean()
        return LossTerms(total, {k: v.detach() for k, v in terms.items()})
