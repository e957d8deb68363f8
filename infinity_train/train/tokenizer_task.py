"""Training the multi-scale bitwise tokenizer: the autoencoder (L1, perceptual, GAN, commitment and
entropy terms, optionally the "reg" variant) and, once the GAN starts, its patch discriminator.
Validation reports L1, PSNR and SSIM of the reconstructions of the held-out images."""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn

from data_pipelines.reader import to_model_range
from infinity_train import geometry
from infinity_train.build import build_tokenizer
from infinity_train.config.schema import TrainConfig
from infinity_train.optim import peak_lr
from infinity_train.tokenizer import TokenizerLoss
from infinity_train.tokenizer.image_metrics import psnr, ssim
from infinity_train.tokenizer.losses import reconstruction_l1
from infinity_train.tokenizer.quantizer import parent_bit_dependence
from infinity_train.train.task import Metrics, Task


class TokenizerTask(Task):
    name = "tokenizer"

    def __init__(self, cfg: TrainConfig, device: torch.device, bf16: bool) -> None:
        super().__init__(device, bf16)
        self.cfg = cfg
        self.tokenizer = build_tokenizer(cfg)
        loss = cfg.tokenizer.loss
        self.objective = TokenizerLoss(
            l1=loss.l1, perceptual=loss.perceptual, perceptual_weights=loss.perceptual_weights, gan=loss.gan,
            gan_kind=loss.gan_kind, gan_start_step=loss.gan_start_step, lecam=loss.lecam, quantizer=loss.quantizer,
            entropy=loss.entropy, reg=loss.reg,
        ).to(device)
        if self.objective.perceptual_distance is not None:
            self.objective.perceptual_distance.requires_grad_(False).eval()

    def trained_modules(self) -> dict[str, nn.Module]:
        modules: dict[str, nn.Module] = {"model": self.tokenizer}
        if self.objective.discriminator is not None:
            modules["discriminator"] = self.objective.discriminator
        return modules

    def extra_state_modules(self) -> dict[str, nn.Module]:
        return {"lecam": self.objective.lecam} if self.objective.lecam is not None else {}

    def learning_rate(self, unit: str) -> float:
        return peak_lr(self.cfg)

    def fingerprint(self) -> dict[str, Any]:
        return {"task": self.name, **self.tokenizer.architecture, "discriminator": self.objective.discriminator is not None}

    def summary(self) -> dict[str, Any]:
        return {
            "params_total": sum(p.numel() for p in self.tokenizer.parameters()),
            "params_non_embedding": sum(p.numel() for p in self.tokenizer.parameters()),
            "d": self.tokenizer.d, "token_bits": self.tokenizer.token_dim,
        }

    def prepare(self, batch: dict[str, Any], training: bool) -> dict[str, Any]:
        if "images" not in batch:
            raise ValueError("task=tokenizer trains on images: use data.source=synthetic or webdataset, not cached shards")
        return {
            "images": to_model_range(batch["images"].to(self.device, non_blocking=True)),
            "schedule": geometry.scale_schedule(self.cfg.data.resolution, batch["h_div_w"]),
        }

    def unit_active(self, unit: str, step: int) -> bool:
        return unit == "model" or self.objective.gan_active(step)

    def loss(self, unit: str, micro: dict[str, Any], step: int) -> tuple[torch.Tensor, Metrics]:
        images = micro["images"]
        if unit == "model":
            with self.autocast():
                output = self.units["model"].module(images, micro["schedule"])
            terms = self.objective.generator_loss(images, output, step)
            micro["reconstruction"] = output.reconstruction.detach()
            return terms.total, {"loss": terms.total.detach(), **terms.terms}
        with self.autocast():
            terms = self.objective.discriminator_loss(images, micro["reconstruction"], step, self.units["discriminator"].module)
        return terms.total, {f"disc/{k}": v for k, v in terms.terms.items()}

    def work(self, micro: dict[str, Any]) -> tuple[int, int, float]:
        return micro["images"].shape[0], 0, 0.0

    @torch.no_grad()
    def validation_sums(self, micro: dict[str, Any]) -> dict[str, torch.Tensor]:
        images = micro["images"]
        with self.autocast():
            output = self.units["model"].module(images, micro["schedule"])
        reconstruction = output.reconstruction.float().clamp(-1, 1)
        count = images.shape[0]
        sums = {
            "images": torch.tensor(float(count), dtype=torch.float64),
            "l1": reconstruction_l1(reconstruction, images).double().cpu() * count,
            "psnr": psnr(reconstruction, images).double().sum().cpu(),
            "ssim": ssim(reconstruction, images).double().sum().cpu(),
            "latent_norm": output.quantizer.latent_norm.double().cpu() * count,
        }
        if len(output.quantizer.bits) > 1:
            sums["parent_dependence"] = parent_bit_dependence(output.quantizer.bits).mean().double().cpu() * count
            sums["multiscale_images"] = torch.tensor(float(count), dtype=torch.float64)
        return sums

    def validation_metrics(self, sums: Mapping[str, float]) -> dict[str, float]:
        n = sums["images"]
        metrics = {
            "val/l1": sums["l1"] / n, "val/psnr": sums["psnr"] / n, "val/ssim": sums["ssim"] / n,
            "val/latent_norm": sums["latent_norm"] / n, "val/images": n,
        }  # fmt: skip
        if sums.get("multiscale_images"):
            metrics["val/parent_bit_dependence"] = sums["parent_dependence"] / sums["multiscale_images"]
        return metrics
