"""AdamW with the reference parameter groups, and the learning rate scaled by the global batch."""

from __future__ import annotations

import logging

import torch
import torch.nn as nn

from infinity_train.config.schema import OptimConfig, Task, TrainConfig

log = logging.getLogger(__name__)

NO_DECAY_NAMES = ("start_pos", "scale_embed", "uncond_text", "adaln_table", "logit_scale", "query")
"""Parameters trained without weight decay besides every 1-D parameter and bias: the input
embeddings, the learned unconditional text, the per-block AdaLN tables and the text-pool query."""


def decays(name: str, param: torch.Tensor) -> bool:
    if param.ndim < 2 or name.endswith(".bias"):
        return False
    return not any(part in NO_DECAY_NAMES for part in name.split("."))


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if decays(name, param) else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def peak_lr(cfg: TrainConfig) -> float:
    """Transformer: ``optim.lr * global_batch / optim.lr_reference_batch`` (the reference's linear
    scaling); tokenizer: ``tokenizer.lr`` as given."""
    if cfg.task == Task.tokenizer:
        return cfg.tokenizer.lr
    return cfg.optim.lr * cfg.data.global_batch_size / cfg.optim.lr_reference_batch


def use_fused(optim: OptimConfig, device: torch.device) -> bool:
    """``auto`` fuses on CUDA only: the CPU path keeps the reference for-each implementation."""
    if optim.fused == "auto":
        return device.type == "cuda"
    return optim.fused == "true"


def build_adamw(model: nn.Module, optim: OptimConfig, lr: float, device: torch.device) -> torch.optim.AdamW:
    fused = use_fused(optim, device)
    return torch.optim.AdamW(
        parameter_groups(model, optim.weight_decay),
        lr=lr,
        betas=(optim.betas[0], optim.betas[1]),
        eps=optim.eps,
        fused=fused or None,
        foreach=None if fused else True,
    )
