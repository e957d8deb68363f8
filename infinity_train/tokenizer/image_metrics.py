"""Reconstruction quality of images in [-1, 1]: PSNR and SSIM (Gaussian window 11, sigma 1.5, on
[0, 1] intensities, averaged over channels), per image."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def _unit(image: torch.Tensor) -> torch.Tensor:
    return ((image.float().clamp(-1, 1) + 1) / 2)


def psnr(reconstruction: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """(B,) PSNR in dB of images (B, C, H, W) in [-1, 1], peak 1 on the [0, 1] scale."""
    mse = (_unit(reconstruction) - _unit(image)).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def _gaussian_window(channels: int, device: torch.device) -> torch.Tensor:
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float32, device=device) - SSIM_WINDOW // 2
    g = torch.exp(-(coords**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def ssim(reconstruction: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """(B,) mean SSIM of images (B, C, H, W) in [-1, 1] (valid window positions only)."""
    x, y = _unit(reconstruction), _unit(image)
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {tuple(x.shape[-2:])}")
    channels = x.shape[1]
    window = _gaussian_window(channels, x.device)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2))
    return ssim_map.flatten(1).mean(1)
