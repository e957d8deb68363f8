"""Training the Infinity transformer on a frozen tokenizer and text encoder.

A batch becomes: the tokenizer's continuous latent F (online from images, or read from a cache), the
packed caption embeddings, and the scale schedule of the batch's aspect template. Each step builds the
teacher-forcing inputs and labels with bitwise self-correction; validation uses plain teacher forcing
(no flips, no caption dropout, no drop-path) so its loss is comparable across runs.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from data_pipelines.reader import to_model_range
from infinity_train import geometry
from infinity_train.build import build_text_encoder, build_transformer, load_trained_tokenizer
from infinity_train.config.schema import TrainConfig
from infinity_train.models.infinity import MODEL_FORMAT
from infinity_train.models.loss import bitwise_loss
from infinity_train.optim import peak_lr
from infinity_train.sizing import forward_flops_per_image, parameter_counts, shape_from_config
from infinity_train.text.packed import PackedText, pack_embeddings
from infinity_train.train.self_correction import bitwise_self_correction
from infinity_train.train.task import Metrics, Task

LN2 = math.log(2.0)


class TransformerTask(Task):
    name = "transformer"

    def __init__(self, cfg: TrainConfig, device: torch.device, bf16: bool) -> None:
        super().__init__(device, bf16)
        self.cfg = cfg
        self.shape = shape_from_config(cfg)
        self.model = build_transformer(cfg)
        self.tokenizer = load_trained_tokenizer(cfg, device)
        self.text_encoder = build_text_encoder(cfg, device)
        if self.text_encoder.hidden_dim != self.shape.text_dim:
            raise ValueError(f"text encoder {cfg.model.text_encoder.name} is {self.text_encoder.hidden_dim}-dim, the model expects {self.shape.text_dim}")
        self.token_dim = self.tokenizer.token_dim
        if self.token_dim != self.model.bits:
            raise ValueError(f"the tokenizer gives {self.token_dim} bits per token, the model predicts {self.model.bits}")
        self.num_scales = geometry.num_scales(cfg.data.resolution)

    # ---- modules

    def trained_modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def learning_rate(self, unit: str) -> float:
        return peak_lr(self.cfg)

    def fingerprint(self) -> dict[str, Any]:
        s = self.shape
        return {
            "task": self.name, "depth": s.depth, "width": s.width, "heads": s.heads, "bits": s.bits,
            "text_dim": s.text_dim, "text_max_len": s.text_max_len, "mlp_ratio": s.mlp_ratio, "max_scales": s.max_scales,
            "model_format": MODEL_FORMAT, "text_pool_heads": self.model.text_pool_heads, "input_resampling": self.model.input_resampling,
        }

    def load_initial_weights(self, path: Path) -> None:
        """A release checkpoint (fine-tuning from the public weights) or another run's export."""
        from infinity_train.weights import load_weights, read_weights

        load_weights(self.model, read_weights(path))

    def summary(self) -> dict[str, Any]:
        counts = parameter_counts(self.shape)
        return {
            "params_total": counts["total"], "params_non_embedding": counts["non_embedding"],
            "depth": self.shape.depth, "width": self.shape.width, "heads": self.shape.heads,
            "d": self.tokenizer.d, "token_bits": self.shape.bits,
        }

    # ---- batches

    def prepare(self, batch: dict[str, Any], training: bool) -> dict[str, Any]:
        schedule = geometry.scale_schedule(self.cfg.data.resolution, batch["h_div_w"])
        images = None
        if "latents" in batch:  # a cached batch: F and the caption embeddings were precomputed
            latent = batch["latents"].to(self.device, non_blocking=True).float()
            text = _packed_from_list(batch["text"], self.device)
        else:
            images = to_model_range(batch["images"].to(self.device, non_blocking=True))
            with torch.no_grad(), self.autocast():
                latent = self.tokenizer.encode(images).float()
            text = self.text_encoder.encode(batch["captions"])
        height, width = geometry.pixel_size(self.cfg.data.resolution, batch["h_div_w"])
        return {
            "latent": latent,
            "text": text,
            "schedule": schedule,
            "pixels": height * width,
            "text_lengths": text.lengths.tolist(),
            "captions": batch.get("captions"),
            "specs": batch.get("specs"),
            "images": images if not training and "latents" not in batch else None,  # in [-1, 1], for the decoded-prediction error
        }

    def loss(self, unit: str, micro: dict[str, Any], step: int) -> tuple[torch.Tensor, Metrics]:
        sc, loss_cfg = self.cfg.model.self_correction, self.cfg.model.loss
        corrected = bitwise_self_correction(
            micro["latent"], micro["schedule"], sc.prob, sc.num_scales, patchify=self.tokenizer.patchify,
            resampling=self.model.input_resampling, per_sample_strength=sc.per_sample_strength, requant=sc.requant,
        )
        with self.autocast():
            logits = self.units["model"].module(corrected.inputs, micro["text"], micro["schedule"])
        result = bitwise_loss(logits, corrected.flat_labels, micro["schedule"], loss_cfg.reweight_by_scale, loss_cfg.label_smoothing)
        lengths = torch.tensor([h * w for h, w in micro["schedule"]], dtype=torch.float32, device=self.device)
        return result.loss, {
            "loss": result.loss.detach(),
            "bit_accuracy": (result.scale_bit_accuracy * lengths).sum() / lengths.sum(),
            "token_accuracy": result.token_accuracy,
            "loss_scale": result.scale_losses,
            "bit_accuracy_scale": result.scale_bit_accuracy,
        }

    def work(self, micro: dict[str, Any]) -> tuple[int, int, float]:
        schedule = micro["schedule"]
        images = len(micro["text_lengths"])
        flops = sum(_train_flops(self.shape, schedule, length) for length in micro["text_lengths"])
        return images, images * geometry.num_tokens(schedule), float(flops)

    # ---- validation

    @torch.no_grad()
    def validation_sums(self, micro: dict[str, Any]) -> dict[str, torch.Tensor]:
        schedule = micro["schedule"]
        plain = bitwise_self_correction(micro["latent"], schedule, 0.0, 0, patchify=self.tokenizer.patchify, resampling=self.model.input_resampling)
        with self.autocast():
            logits = self.units["model"].module(plain.inputs, micro["text"], schedule)
        result = bitwise_loss(logits, plain.flat_labels, schedule, self.cfg.model.loss.reweight_by_scale)
        images = float(len(micro["text_lengths"]))
        lengths = [h * w for h, w in schedule]
        sums = {
            "images": torch.tensor(images),
            "pixels": torch.tensor(images * micro["pixels"]),
            "loss": result.loss.double().cpu() * images,
            "tokens": torch.tensor(images * sum(lengths)),
            "tokens_correct": result.token_accuracy.double().cpu() * images * sum(lengths),
        }
        for k, n in enumerate(lengths):
            sums[f"tokens_scale/{k}"] = torch.tensor(images * n)
            sums[f"ce_scale/{k}"] = result.scale_losses[k].double().cpu() * images * n
            sums[f"correct_scale/{k}"] = result.scale_bit_accuracy[k].double().cpu() * images * n
        if micro.get("images") is not None and not self.tokenizer.patchify:
            sums |= self._decoded_prediction_sums(micro["images"].to(self.device).float(), logits, plain.labels, schedule)
        return {k: v.double() for k, v in sums.items()}

    def _decoded_prediction_sums(self, images: torch.Tensor, logits: torch.Tensor, labels: list[torch.Tensor], schedule) -> dict[str, torch.Tensor]:
        """Pixel error against the originals of held-out images decoded from the model's own teacher-forced
        predictions (each scale predicted from the true earlier scales), in the same unit for every d:

        * ``predicted``: the argmax bits of every scale, decoded (PSNR and mean squared error, [-1, 1] units);
        * ``expected``: the expected codes (2 p - 1) / sqrt(d) of every bit under the model, summed and
          decoded: the posterior-mean latent, whose error is a Brier-type (proper) score of the bit
          probabilities, so it rewards calibrated confidence and not only the most likely sign;
        * ``tokenizer``: the true bits decoded (the ceiling a perfect model reaches)."""
        from infinity_train.tokenizer.image_metrics import psnr
        from infinity_train.tokenizer.quantizer import bits_to_latent

        probability = logits.float().softmax(-1)[..., 1]  # (B, L, d): P(bit = 1)
        predicted = probability > 0.5
        bits_scales, expected_scales, offset = [], [], 0
        for h, w in schedule:
            chunk = slice(offset, offset + h * w)
            bits_scales.append(predicted[:, chunk].reshape(predicted.shape[0], h, w, predicted.shape[-1]))
            codes = (2 * probability[:, chunk] - 1) / math.sqrt(probability.shape[-1])
            expected_scales.append(codes.transpose(1, 2).reshape(codes.shape[0], codes.shape[-1], h, w))
            offset += h * w
        decoded = self.tokenizer.bits_to_image(bits_scales, schedule).float()
        expected = self.tokenizer.decode(bits_to_latent(expected_scales, schedule)).float()  # float codes: summed as they are
        reconstructed = self.tokenizer.bits_to_image(labels, schedule).float()
        return {
            "decoded_images": torch.tensor(float(images.shape[0])),
            "psnr_predicted": psnr(decoded, images).double().sum().cpu(),
            "mse_predicted": (decoded - images).pow(2).mean(dim=(1, 2, 3)).double().sum().cpu(),
            "psnr_expected": psnr(expected, images).double().sum().cpu(),
            "mse_expected": (expected - images).pow(2).mean(dim=(1, 2, 3)).double().sum().cpu(),
            "psnr_tokenizer": psnr(reconstructed, images).double().sum().cpu(),
        }

    def validation_metrics(self, sums: Mapping[str, float]) -> dict[str, float]:
        k_range = range(self.num_scales)
        ce_total = sum(sums[f"ce_scale/{k}"] for k in k_range)  # nats, summed over tokens, mean over bits
        correct = sum(sums[f"correct_scale/{k}"] for k in k_range)
        bits_total = ce_total * self.token_dim / LN2
        metrics = {
            "val/loss": sums["loss"] / sums["images"],
            "val/ce_per_bit": ce_total / sums["tokens"],
            "val/bits_per_token": bits_total / sums["tokens"],
            "val/bits_per_image": bits_total / sums["images"],
            "val/bits_per_pixel": bits_total / sums["pixels"],
            "val/bit_accuracy": correct / sums["tokens"],
            "val/token_accuracy": sums["tokens_correct"] / sums["tokens"],
            "val/images": sums["images"],
        }
        for k in k_range:
            metrics[f"val/ce_scale/{k}"] = sums[f"ce_scale/{k}"] / sums[f"tokens_scale/{k}"]
            metrics[f"val/bit_accuracy_scale/{k}"] = sums[f"correct_scale/{k}"] / sums[f"tokens_scale/{k}"]
        if sums.get("decoded_images"):
            n = sums["decoded_images"]
            metrics["val/psnr_predicted"] = sums["psnr_predicted"] / n
            metrics["val/mse_predicted"] = sums["mse_predicted"] / n
            metrics["val/psnr_expected"] = sums["psnr_expected"] / n
            metrics["val/mse_expected"] = sums["mse_expected"] / n
            metrics["val/psnr_tokenizer"] = sums["psnr_tokenizer"] / n
        return metrics


@lru_cache(maxsize=4096)
def _train_flops(shape, schedule: tuple[tuple[int, int], ...], text_tokens: int) -> int:
    return 3 * forward_flops_per_image(shape, schedule, text_tokens)["forward_total"]


def _packed_from_list(texts: Any, device: torch.device) -> PackedText:
    """Caption embeddings of a cached batch (a list of (len_i, Dt) tensors or a PackedText), in fp32 on ``device``."""
    packed = texts if isinstance(texts, PackedText) else pack_embeddings([t.to(device) for t in texts])
    return packed.to(device, torch.float32)
