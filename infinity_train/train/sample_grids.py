"""Periodic sample grids of a transformer run, scored by the synthetic checker where the held-out
captions come with scene specs.

The prompts are the first ``logging.sample_prompts`` held-out captions, fixed for the whole run, and
sampling uses a fixed seed, so grids of different steps (and of different model sizes) are comparable.
Rank 0 samples from a consolidated copy of the model, which works the same whatever shards it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from data_pipelines.synthetic.checker import check
from data_pipelines.synthetic.evaluation import CheckerTally
from data_pipelines.synthetic.spec import SceneSpec
from infinity_train import geometry
from infinity_train.build import build_transformer
from infinity_train.distributed import World
from infinity_train.sample_command import sample_images, save_grid

log = logging.getLogger(__name__)

SAMPLE_SEED = 0
SAMPLE_CFG = 3.0
SAMPLE_TAU = 1.0


class SampleGrids:
    def __init__(
        self, task: Any, held_out: Any, count: int, resolution: int, directory: Path, world: World, cfg: float = SAMPLE_CFG, tau: float = SAMPLE_TAU
    ) -> None:
        self.task, self.world, self.directory = task, world, directory
        self.cfg, self.tau = cfg, tau
        self.schedule = geometry.scale_schedule(resolution, 1.0)
        self.prompts: list[str] = []
        self.specs: list[dict | None] = []
        for batch in held_out.reader:  # the same first captions on every rank (fixed order, epoch 0)
            for caption, spec, h_div_w in zip(batch["captions"], batch["specs"], [batch["h_div_w"]] * len(batch["captions"])):
                if h_div_w == 1.0 and len(self.prompts) < count:
                    self.prompts.append(caption)
                    self.specs.append(spec)
            if len(self.prompts) >= count:
                break
        held_out.reader.set_epoch(0)

    def make(self, step: int, final: bool) -> dict[str, float]:
        """Write ``samples/step_<step>.png`` (and ``samples/final.png``); returns checker metrics.
        A collective: every rank takes part in consolidating the weights, rank 0 samples."""
        state = self.task.units["model"].full_model_state()
        if not self.world.is_main or not self.prompts:
            return {}
        model = build_transformer(self.task.cfg)
        model.load_state_dict(state)
        model.to(self.task.device)
        images = sample_images(model, self.task.tokenizer, self.task.text_encoder, self.prompts, self.schedule, cfg=self.cfg, tau=self.tau, seed=SAMPLE_SEED)
        rows = max(1, int(len(self.prompts) ** 0.5))
        path = save_grid(images, self.directory / f"step_{step:08d}.png", rows)
        if final:
            save_grid(images, self.directory / "final.png", rows)
        log.info("step %d: sample grid %s", step, path)
        return self._score(images)

    def _score(self, images) -> dict[str, float]:
        tally = CheckerTally()
        for image, spec in zip(images.numpy(), self.specs):
            if spec is not None:
                tally.add(check(SceneSpec.from_dict(spec), np.ascontiguousarray(image)), kind="sample")
        if tally.num_images == 0:
            return {}
        return {f"val/checker_{key}": value for key, value in tally.accuracy().items() if value is not None} | {
            "val/checker_score": tally.accuracy()["overall"] or 0.0
        }
