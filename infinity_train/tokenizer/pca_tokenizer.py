"""A fitted linear tokenizer (kind ``pca``): whitened patch-PCA encoder, the project's unchanged
multi-scale BSQ quantizer, and a least-squares linear decoder fitted on the quantized codes.

It is a CPU stand-in for Infinity's learned CNN autoencoder (``tokenizer.kind=bsq``), not a copy of
it: on a CPU budget of minutes the learned tokenizer's latent drifts far above the unit codes and
every later scale repeats the first one's signs (issue 15), while this one is fitted in seconds,
is deterministic, and uses every scale (PSNR rises with each added scale).

* Encoder: each 16x16x3 patch (one token) is a 768-vector x; F = W_e^T (x - mu), where W_e holds
  the top-d principal directions of the training patches divided by the square roots of their
  variances (whitening) and multiplied by ``LATENT_RMS_FACTOR / sqrt(d)``, so every channel of F
  has rms 2/sqrt(d): about two code steps (codes are +-1/sqrt(d)), which suits the short
  schedules of 64^2 / 128^2 images (a rms of one code step makes the last scale negate its parent).
* Quantizer: :func:`encode_bits` / :func:`bits_to_latent`, exactly as for the learned tokenizer.
* Decoder: x_hat = W_d^T q + b per token, where q is the *quantized* latent (sum of the upsampled
  codes of every scale), fitted by ridge-regularized least squares on the training images, so it
  decodes partial and sampled bit sums the same way.

Saved like the other tokenizers as ``tokenizer.safetensors`` (tensors ``pca.*``); the file's tensors
say everything needed to rebuild it.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from infinity_train.geometry import PATCH_PIXELS, Schedule, check_d
from infinity_train.tokenizer.autoencoder import check_image
from infinity_train.tokenizer.token_bits import TokenBits

LATENT_RMS_FACTOR = 2.0
"""Per-channel rms of the latent, in units of 1/sqrt(d) (one code step)."""
RIDGE = 1e-4
"""Ridge term of the decoder's least squares, relative to the mean diagonal of the normal matrix."""
PATCH_DIM = 3 * PATCH_PIXELS * PATCH_PIXELS
KEYS = ("pca.mean", "pca.encoder", "pca.decoder", "pca.decoder_bias")


def image_patches(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, H/16 * W/16, 768) patch vectors, row-major over the token grid."""
    check_image(images, PATCH_PIXELS)
    return F.unfold(images.float(), kernel_size=PATCH_PIXELS, stride=PATCH_PIXELS).transpose(1, 2)


def patches_to_image(patches: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """(B, h*w, 768) -> (B, 3, 16h, 16w)."""
    h, w = int(grid[0]), int(grid[1])
    return F.fold(patches.transpose(1, 2), output_size=(h * PATCH_PIXELS, w * PATCH_PIXELS), kernel_size=PATCH_PIXELS, stride=PATCH_PIXELS)


class PcaTokenizer(TokenBits, nn.Module):
    """Same interface as :class:`BitwiseTokenizer` for everything a transformer run, sampling and
    evaluation use (encode, decode, bits, schedules); it is fitted, not trained (:meth:`fit`)."""

    kind = "pca"
    patchify = False

    def __init__(self, d: int) -> None:
        super().__init__()
        self.d = check_d(d)
        self.register_buffer("mean", torch.zeros(PATCH_DIM))
        self.register_buffer("encoder", torch.zeros(PATCH_DIM, d))
        self.register_buffer("decoder", torch.zeros(d, PATCH_DIM))
        self.register_buffer("decoder_bias", torch.zeros(PATCH_DIM))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.architecture = {"kind": self.kind, "d": d, "patch": PATCH_PIXELS, "latent_rms_factor": LATENT_RMS_FACTOR}

    # ------------------------------------------------------------ fitting

    @torch.no_grad()
    def fit(self, images: torch.Tensor, token_schedule: Schedule | None = None) -> dict[str, float]:
        """Fit encoder and decoder on training images (N, 3, H, W) in [-1, 1]; deterministic.
        Returns fit statistics (explained variance of the d components, latent rms)."""
        patches = image_patches(images).reshape(-1, PATCH_DIM).double()
        if patches.shape[0] < 2 * self.d:
            raise ValueError(f"fitting a d={self.d} PCA tokenizer needs at least {2 * self.d} patches, got {patches.shape[0]}")
        mean = patches.mean(0)
        centred = patches - mean
        covariance = centred.T @ centred / (patches.shape[0] - 1)
        values, vectors = torch.linalg.eigh(covariance)  # ascending
        values, vectors = values.flip(0)[: self.d].clamp_min(1e-12), vectors.flip(1)[:, : self.d]
        # A deterministic sign per component: its largest-magnitude entry is positive.
        signs = torch.sign(vectors.gather(0, vectors.abs().argmax(0, keepdim=True))).squeeze(0)
        vectors = vectors * signs
        scale = LATENT_RMS_FACTOR / math.sqrt(self.d)
        self.mean.copy_(mean.float())
        self.encoder.copy_((vectors / values.sqrt() * scale).float())

        # Decoder: least squares from the quantized latent (all scales summed) to the patch pixels.
        latent = self.encode(images)
        quantized = self.bits_to_latent(self.latent_to_bits(latent, token_schedule), self._latent_schedule_for(latent, token_schedule))
        q = quantized.permute(0, 2, 3, 1).reshape(-1, self.d).double()
        design = torch.cat([q, torch.ones(q.shape[0], 1, dtype=q.dtype)], dim=1)
        normal = design.T @ design
        normal = normal + RIDGE * normal.diagonal().mean() * torch.eye(normal.shape[0], dtype=normal.dtype)
        solution = torch.linalg.solve(normal, design.T @ patches)
        self.decoder.copy_(solution[: self.d].float())
        self.decoder_bias.copy_(solution[self.d].float())
        self.fitted.fill_(True)
        return {
            "explained_variance": float(values.sum() / covariance.diagonal().sum()),
            "latent_rms": float(latent.pow(2).mean().sqrt()),
            "patches": float(patches.shape[0]),
        }

    def _check_fitted(self) -> None:
        if not bool(self.fitted):
            raise RuntimeError("this PCA tokenizer is not fitted: call fit(images) or load a fitted tokenizer.safetensors")

    # ------------------------------------------------------------ geometry

    @property
    def stride(self) -> int:
        return PATCH_PIXELS

    # ------------------------------------------------------------ image <-> latent

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, H, W) in [-1, 1] -> latent F (B, d, H/16, W/16)."""
        patches = image_patches(image)
        latent = (patches - self.mean) @ self.encoder  # (B, L, d)
        h, w = image.shape[-2] // PATCH_PIXELS, image.shape[-1] // PATCH_PIXELS
        return latent.transpose(1, 2).reshape(image.shape[0], self.d, h, w)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent (B, d, h, w) -> image (B, 3, 16h, 16w) clamped to [-1, 1]."""
        self._check_fitted()
        if latent.ndim != 4 or latent.shape[1] != self.d:
            raise ValueError(f"decode expects a latent of shape (B, {self.d}, h, w), got {tuple(latent.shape)}")
        tokens = latent.float().flatten(2).transpose(1, 2)  # (B, L, d)
        patches = tokens @ self.decoder + self.decoder_bias
        return patches_to_image(patches, latent.shape[-2:]).clamp(-1.0, 1.0)

    latent_to_image = decode

    # ------------------------------------------------------------ files

    def file_state(self) -> dict[str, torch.Tensor]:
        """The tensors of ``tokenizer.safetensors``."""
        self._check_fitted()
        return {
            "pca.mean": self.mean.contiguous(), "pca.encoder": self.encoder.contiguous(),
            "pca.decoder": self.decoder.contiguous(), "pca.decoder_bias": self.decoder_bias.contiguous(),
        }  # fmt: skip

    @classmethod
    def from_file_state(cls, state: dict[str, torch.Tensor]) -> "PcaTokenizer":
        missing = [k for k in KEYS if k not in state]
        if missing:
            raise ValueError(f"not a fitted PCA tokenizer file: missing {', '.join(missing)}")
        d = int(state["pca.encoder"].shape[1])
        tokenizer = cls(d)
        expected = {"pca.mean": (PATCH_DIM,), "pca.encoder": (PATCH_DIM, d), "pca.decoder": (d, PATCH_DIM), "pca.decoder_bias": (PATCH_DIM,)}
        for key, shape in expected.items():
            if tuple(state[key].shape) != shape:
                raise ValueError(f"PCA tokenizer file: {key} has shape {tuple(state[key].shape)}, expected {shape}")
        tokenizer.mean.copy_(state["pca.mean"])
        tokenizer.encoder.copy_(state["pca.encoder"])
        tokenizer.decoder.copy_(state["pca.decoder"])
        tokenizer.decoder_bias.copy_(state["pca.decoder_bias"])
        tokenizer.fitted.fill_(True)
        return tokenizer.eval()


def is_pca_state(state: dict[str, torch.Tensor]) -> bool:
    return any(key.startswith("pca.") for key in state)
