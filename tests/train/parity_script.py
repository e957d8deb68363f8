"""Run under torchrun with 2 gloo processes: a sharded (or replicated) unit and a single-process unit
train the same model on the same global batches; the script prints the largest differences.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/train/parity_script.py fsdp
"""

from __future__ import annotations

import copy
import json
import sys

import torch
import torch.distributed as dist

from infinity_train.config import load_config, to_typed, validate
from infinity_train.config.schema import ParallelConfig, Strategy
from infinity_train.distributed import detect_world, init_process_group
from infinity_train.build import build_transformer
from infinity_train.models.loss import bitwise_loss
from infinity_train.parallel.units import build_unit

SCHEDULE = ((1, 1), (2, 2), (4, 4))
GLOBAL_BATCH, STEPS, LR = 8, 3, 3e-3


def batches(bits: int, text_dim: int):
    generator = torch.Generator().manual_seed(0)
    for _ in range(STEPS):
        inputs = torch.randn(GLOBAL_BATCH, 20, bits, generator=generator) / 4
        labels = torch.rand(GLOBAL_BATCH, 21, bits, generator=generator) > 0.5
        lengths = torch.randint(2, 7, (GLOBAL_BATCH,), generator=generator)
        tokens = torch.randn(int(lengths.sum()), text_dim, generator=generator)
        yield inputs, labels, lengths, tokens


@torch.no_grad()
def randomized(model: torch.nn.Module) -> torch.nn.Module:
    """O(1) weights instead of the near-zero reference gates, so every block changes the loss."""
    for param in model.parameters():
        param.copy_(torch.randn_like(param) / max(1, param.shape[-1]) ** 0.5)
    return model


def text_of(lengths: torch.Tensor, tokens: torch.Tensor, start: int, stop: int):
    offsets = torch.cat((torch.zeros(1, dtype=torch.long), lengths.cumsum(0)))
    piece = tokens[offsets[start] : offsets[stop]]
    cu = torch.cat((torch.zeros(1, dtype=torch.int32), lengths[start:stop].cumsum(0).int()))
    return piece, cu, int(lengths[start:stop].max())


def main() -> None:
    strategy = Strategy(sys.argv[1])
    world = detect_world()
    device = torch.device("cpu")
    init_process_group(world, device)
    cfg = validate(to_typed(load_config(["model=debug2", "model.text_encoder.name=tiny-t5", "tokenizer.d=8", "model.drop_path=0", "model.cond_drop=0", f"parallel={strategy.value}", f"world_size={world.world_size}"])))
    torch.manual_seed(0)
    reference_model = randomized(build_transformer(cfg))
    distributed_model = copy.deepcopy(reference_model)
    reference = build_unit("model", reference_model, cfg.optim, ParallelConfig(strategy=Strategy.single), world, device, GLOBAL_BATCH, LR, False)
    parallel = ParallelConfig(strategy=strategy, activation_checkpointing=cfg.parallel.activation_checkpointing, replicate_degree=2 if strategy == Strategy.hsdp else 1)
    shard = build_unit("model", distributed_model, cfg.optim, parallel, world, device, GLOBAL_BATCH // world.world_size, LR, False)

    per_rank = GLOBAL_BATCH // world.world_size
    start, stop = world.rank * per_rank, (world.rank + 1) * per_rank
    loss_gaps = []
    for inputs, labels, lengths, tokens in batches(cfg.tokenizer.d, 64):
        full = bitwise_loss(reference.module(inputs, text_of(lengths, tokens, 0, GLOBAL_BATCH), SCHEDULE), labels, SCHEDULE).loss
        reference.backward(full)
        reference.step(LR)
        local = bitwise_loss(shard.module(inputs[start:stop], text_of(lengths, tokens, start, stop), SCHEDULE), labels[start:stop], SCHEDULE).loss
        shard.backward(local)
        shard.step(LR)
        mean_local = local.detach().clone()
        dist.all_reduce(mean_local)
        loss_gaps.append(abs(mean_local.item() / world.world_size - full.item()))
    gathered = shard.full_model_state()
    if world.rank == 0:
        own = reference.model.state_dict()
        param_gap = max(float((gathered[k] - own[k]).abs().max()) for k in own)
        print(json.dumps({"loss_gap": max(loss_gaps), "param_gap": param_gap, "steps": STEPS}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
