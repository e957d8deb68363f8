"""Scale-by-scale sampling of bits with a KV cache, classifier-free guidance and per-bit top-k/top-p.

Decoding the returned latent to pixels is the tokenizer's job.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from infinity_train.geometry import PATCHIFY_FACTOR, latent_schedule
from infinity_train.models.infinity import InfinityTransformer
from infinity_train.models.layout import as_schedule
from infinity_train.text.packed import PackedText, as_packed_text
from infinity_train.tokenizer.ops import patchify_bits, unpatchify_bits
from infinity_train.tokenizer.quantizer import RunningSum, codes_from_bits


@dataclass
class GeneratedBits:
    bits: list[torch.Tensor]  # per scale (B, h_k, w_k, d) bool
    latent: torch.Tensor  # (B, d, H, W): sum of the upsampled codes of every scale, on the latent grid
    logits: list[torch.Tensor] = field(default_factory=list)  # per scale (B, h_k*w_k, d, 2) guided logits before tau, if asked


def sample_bits(logits: torch.Tensor, top_k: int = 0, top_p: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample every bit from its 2-way distribution ``logits`` (..., 2) -> (...) bool.

    top_k = 1 keeps only the likelier value (greedy); 0 or >= 2 keeps both. top_p in (0, 1] drops the
    less likely value where its probability is <= 1 - top_p. Uniform draws are taken for every bit
    whatever the settings, so a seed gives the same random stream.
    """
    prob_one = logits.float().softmax(-1)[..., 1]
    draws = torch.rand(prob_one.shape, generator=generator, device=prob_one.device)
    sampled = draws < prob_one
    keep_both = torch.ones_like(sampled)
    if top_k == 1:
        keep_both = torch.zeros_like(sampled)
    if top_p > 0:
        keep_both = keep_both & (torch.minimum(prob_one, 1 - prob_one) > 1 - top_p)
    return torch.where(keep_both, sampled, prob_one > 0.5)


def _per_scale(value: float | Sequence[float], count: int, name: str) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)] * count
    values = [float(v) for v in value]
    if len(values) < count:
        raise ValueError(f"{name} has {len(values)} values for {count} scales")
    return values[:count]


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run a block with ``model`` in eval mode, restoring its previous mode after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def generate_bits(
    model: InfinityTransformer,
    text_packed: PackedText | tuple,
    schedule: Sequence[Sequence[int]],
    cfg: float | Sequence[float] = 3.0,
    tau: float | Sequence[float] = 1.0,
    top_k: int = 0,
    top_p: float = 0.0,
    generator: torch.Generator | int | None = None,
    *,
    rope_grid: tuple[int, int] | None = None,
    return_logits: bool = False,
    patchify: bool = False,
) -> GeneratedBits:
    """Sample the bits of every scale of ``schedule`` for the B captions of ``text_packed``.

    cfg, tau: one value or one per scale. As in the release, logits are multiplied by 1/tau, then
    guided: ``cfg * cond + (1 - cfg) * uncond`` (the unconditional half of a doubled batch uses the
    learned unconditional text, cut to each caption's length); cfg = 1 at every scale skips the
    unconditional half. The next scale's input is the running sum of codes resampled by the model's
    ``input_resampling``, as in training. generator: a torch.Generator on the model's device, or an
    int seed. ``return_logits`` keeps the guided logits of every scale (after 1/tau). With ``patchify``
    (a stride-8 tokenizer, tokens of 2x2 latent cells) the running sum lives on the latent grid, twice
    the token grid, and each input is its 2x2 space-to-depth, as in training and in the release.
    """
    schedule = as_schedule(schedule)
    text = as_packed_text(text_packed)
    batch, device = text.batch_size, text.tokens.device
    cfgs, taus = _per_scale(cfg, len(schedule), "cfg"), _per_scale(tau, len(schedule), "tau")
    if min(taus) <= 0:
        raise ValueError("tau must be positive")
    if top_k < 0 or not 0.0 <= top_p <= 1.0:
        raise ValueError(f"top_k must be >= 0 and top_p in [0, 1] (0 = off), got top_k={top_k} top_p={top_p}")
    if isinstance(generator, int):
        generator = torch.Generator(device=device).manual_seed(generator)
    guided = any(c != 1.0 for c in cfgs)
    factor = PATCHIFY_FACTOR if patchify else 1
    if model.bits % (factor * factor):
        raise ValueError(f"patchify needs a token width divisible by 4, got {model.bits}")
    latent_grids = latent_schedule(schedule, patchify)
    final_h, final_w = latent_grids[-1]

    with eval_mode(model):
        if guided:
            uncond_mask = torch.cat((torch.zeros(batch, dtype=torch.bool), torch.ones(batch, dtype=torch.bool)))
            cache = model.new_cache(PackedText.cat([text, text]), uncond_mask=uncond_mask, rope_grid=rope_grid)
        else:
            cache = model.new_cache(text, rope_grid=rope_grid)

        latent_dim = model.bits // (factor * factor)
        running = RunningSum(torch.zeros(batch, latent_dim, final_h, final_w, device=device))
        result = GeneratedBits(bits=[], latent=running.total)
        scale_input = None
        for k, (h, w) in enumerate(schedule):
            logits = model.forward_scale(scale_input, k, schedule, cache).float().mul(1 / taus[k])
            if guided:
                logits = cfgs[k] * logits[:batch] + (1 - cfgs[k]) * logits[batch:]
            if return_logits:
                result.logits.append(logits)
            bits = sample_bits(logits, top_k, top_p, generator).view(batch, h, w, model.bits)
            result.bits.append(bits)
            running.add(codes_from_bits(unpatchify_bits(bits) if patchify else bits))
            if k + 1 < len(schedule):
                next_input = running.next_input(latent_grids[k + 1], model.input_resampling)
                if patchify:
                    next_h, next_w = latent_grids[k + 1]
                    next_input = patchify_bits(next_input.reshape(batch, next_h, next_w, latent_dim)).flatten(1, 2)
                scale_input = torch.cat((next_input, next_input)) if guided else next_input
    result.latent = running.total
    return result
