"""Everything that changes how a model runs, applied from outside it, in one place and in this order:
activation checkpointing per block -> ``torch.compile`` per block -> sharding (DDP, FSDP2, HSDP).

Models stay plain ``nn.Module``s; each declares its repeated units with ``repeated_units()`` (the
``nn.ModuleList``s whose entries are checkpointed, compiled and sharded one by one; [] for a small
model handled as one unit). A model that declares nothing is refused, so renaming a block list can
never silently leave FSDP sharding only the root.
"""

from __future__ import annotations

import logging
import warnings
import torch
import torch.nn as nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

from infinity_train.config.schema import Checkpointing, ParallelConfig, Strategy
from infinity_train.distributed import World

log = logging.getLogger(__name__)

BlockSlot = tuple[nn.ModuleList, int]

# Selective checkpointing keeps the outputs of the expensive ops and recomputes the cheap ones
# (norms, activations, elementwise), trading a little memory for most of the recompute.
_SAVED_OPS = {
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten.convolution.default,
    torch.ops.aten._scaled_dot_product_flash_attention.default,
    torch.ops.aten._scaled_dot_product_efficient_attention.default,
    torch.ops.aten._scaled_dot_product_cudnn_attention.default,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
}


def repeated_blocks(model: nn.Module) -> list[BlockSlot]:
    """(container, index) of each block the model declares in ``repeated_units()``."""
    declare = getattr(model, "repeated_units", None)
    if not callable(declare):
        raise TypeError(
            f"{type(model).__name__} does not declare its repeated units: give it a repeated_units() method returning "
            "the nn.ModuleLists to checkpoint, compile and shard block by block ([] to treat it as one unit)"
        )
    children = {id(module) for module in model.modules()}
    slots: list[BlockSlot] = []
    for container in declare():
        if not isinstance(container, nn.ModuleList) or not len(container) or id(container) not in children:
            raise TypeError(f"{type(model).__name__}.repeated_units() must return non-empty nn.ModuleLists of the model, got {type(container).__name__}")
        slots += [(container, i) for i in range(len(container))]
    return slots


def _selective_context() -> tuple:
    def policy(ctx, op, *args, **kwargs) -> CheckpointPolicy:
        return CheckpointPolicy.MUST_SAVE if op in _SAVED_OPS else CheckpointPolicy.PREFER_RECOMPUTE

    return create_selective_checkpoint_contexts(policy)


def apply_activation_checkpointing(slots: list[BlockSlot], mode: Checkpointing) -> None:
    if mode == Checkpointing.off:
        return
    for container, index in slots:
        if mode == Checkpointing.full:
            container[index] = checkpoint_wrapper(container[index], preserve_rng_state=True)
        else:
            container[index] = checkpoint_wrapper(container[index], preserve_rng_state=True, context_fn=_selective_context)
    log.info("activation checkpointing (%s) on %d blocks", mode.value, len(slots))


def apply_compile(slots: list[BlockSlot]) -> None:
    for container, index in slots:
        container[index] = torch.compile(container[index])
    log.info("torch.compile on %d blocks", len(slots))


def _device_mesh(parallel: ParallelConfig, world: World, device: torch.device):
    from torch.distributed.device_mesh import init_device_mesh

    if parallel.strategy == Strategy.hsdp:
        shard = world.world_size // parallel.replicate_degree
        return init_device_mesh(device.type, (parallel.replicate_degree, shard), mesh_dim_names=("replicate", "shard"))
    return init_device_mesh(device.type, (world.world_size,), mesh_dim_names=("shard",))


def apply_fsdp(model: nn.Module, slots: list[BlockSlot], parallel: ParallelConfig, world: World, device: torch.device, bf16: bool) -> nn.Module:
    """FSDP2: ``fully_shard`` each block, then the root. bf16 parameters with fp32 gradient reduction
    when training in bf16; HSDP shards within and replicates across the outer mesh dimension."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # The root returns the logits as a view; nothing modifies them in place, so FSDP's warning does not apply.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor", category=UserWarning)
    mesh = _device_mesh(parallel, world, device)
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    for position, (container, index) in enumerate(slots):
        # the last block's parameters are needed again at once by the backward pass: keep them
        reshard = parallel.reshard_after_forward and position < len(slots) - 1
        fully_shard(container[index], mesh=mesh, mp_policy=mp, reshard_after_forward=reshard)
    fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=parallel.reshard_after_forward)
    return model


def apply_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def parallelize(model: nn.Module, parallel: ParallelConfig, world: World, device: torch.device, bf16: bool) -> nn.Module:
    """Apply checkpointing, compile and the sharding strategy; returns the module to call in training
    (the model itself for single/FSDP, a DDP wrapper for DDP). DeepSpeed wraps in its own backend."""
    slots = repeated_blocks(model)
    apply_activation_checkpointing(slots, parallel.activation_checkpointing)
    if parallel.compile:
        apply_compile(slots)
    if parallel.strategy in (Strategy.fsdp, Strategy.hsdp):
        return apply_fsdp(model, slots, parallel, world, device, bf16)
    if parallel.strategy == Strategy.ddp:
        return apply_ddp(model, device)
    return model

