"""Activation checkpointing applied from outside the model changes memory, not results: the same loss
and gradients with full and selective checkpointing as without."""

from __future__ import annotations

import copy

import pytest
import torch

from infinity_train.config import load_config, to_typed, validate
from infinity_train.config.schema import Checkpointing, ParallelConfig
from infinity_train.build import build_transformer
from infinity_train.distributed import detect_world
from infinity_train.models.loss import bitwise_loss
from infinity_train.parallel.parallelize import parallelize, repeated_blocks

SCHEDULE = ((1, 1), (2, 2), (4, 4))


def loss_and_grads(model: torch.nn.Module, module: torch.nn.Module) -> tuple[float, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(3, 20, 8, generator=generator) / 3
    labels = torch.rand(3, 21, 8, generator=generator) > 0.5
    text = (torch.randn(9, 64, generator=generator), torch.tensor([0, 2, 5, 9], dtype=torch.int32), 4)
    torch.manual_seed(1)  # drop-path draws
    loss = bitwise_loss(module(inputs, text, SCHEDULE), labels, SCHEDULE).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mode", [Checkpointing.full, Checkpointing.selective])
def test_checkpointed_blocks_give_the_same_loss_and_gradients(mode):
    cfg = validate(to_typed(load_config(["model=debug2", "model.text_encoder.name=tiny-t5", "tokenizer.d=8", "model.cond_drop=0"])))
    torch.manual_seed(0)
    plain = build_transformer(cfg).train()
    checkpointed = copy.deepcopy(plain)
    module = parallelize(checkpointed, ParallelConfig(activation_checkpointing=mode), detect_world({}), torch.device("cpu"), bf16=False)
    assert all("CheckpointWrapper" in type(container[i]).__name__ for container, i in repeated_blocks(checkpointed))
    reference_loss, reference_grads = loss_and_grads(plain, plain)
    loss, grads = loss_and_grads(checkpointed, module)
    assert loss == pytest.approx(reference_loss, abs=1e-6)
    plain_names = {n.replace("._checkpoint_wrapped_module", ""): g for n, g in grads.items()}
    assert plain_names.keys() == reference_grads.keys()
    assert max((plain_names[n] - reference_grads[n]).abs().max().item() for n in reference_grads) < 1e-5


def test_a_model_that_declares_no_repeated_units_is_refused():
    class Renamed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(2))

    with pytest.raises(TypeError, match="does not declare its repeated units"):
        parallelize(Renamed(), ParallelConfig(), detect_world({}), torch.device("cpu"), bf16=False)


def test_declared_units_must_be_block_lists_of_the_model():
    class Foreign(torch.nn.Module):
        def repeated_units(self):
            return [torch.nn.ModuleList([torch.nn.Linear(2, 2)])]  # not a child of the model

    with pytest.raises(TypeError, match="must return non-empty nn.ModuleLists of the model"):
        repeated_blocks(Foreign())


def test_every_trained_model_declares_its_units():
    from infinity_train.tokenizer import BitwiseTokenizer
    from infinity_train.tokenizer.discriminator import PatchDiscriminator

    cfg = validate(to_typed(load_config(["model=debug2", "model.text_encoder.name=tiny-t5", "tokenizer.d=8"])))
    assert len(repeated_blocks(build_transformer(cfg))) == 2
    assert len(repeated_blocks(BitwiseTokenizer(8, base_channels=32, channel_multipliers=(1, 1, 1, 1, 1)))) == 10
    assert repeated_blocks(PatchDiscriminator()) == []
