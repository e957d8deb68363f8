"""The embedded synthetic compositional dataset: seeded scenes of colored shapes, their captions,
a GenEval-style pixel checker, and a writer of WebDataset shards."""

from .captions import Captions, make_captions
from .checker import CRITERIA, Detection, check, detect, evaluate, oracle_check
from .dataset import SyntheticSample, WriteReport, sample_seed, synthetic_sample, write_synthetic_dataset
from .evaluation import CheckerTally
from .generator import generate_scene
from .palette import BACKGROUNDS, COLORS, RELATIONS, SCENE_KINDS, SHAPES, SIZES
from .render import render_scene, render_scene_at
from .spec import ObjectGroup, Relation, SceneObject, SceneSpec

__all__ = [
    "BACKGROUNDS",
    "COLORS",
    "CRITERIA",
    "RELATIONS",
    "SCENE_KINDS",
    "SHAPES",
    "SIZES",
    "Captions",
    "CheckerTally",
    "Detection",
    "ObjectGroup",
    "Relation",
    "SceneObject",
    "SceneSpec",
    "SyntheticSample",
    "WriteReport",
    "check",
    "detect",
    "evaluate",
    "generate_scene",
    "make_captions",
    "oracle_check",
    "render_scene",
    "render_scene_at",
    "sample_seed",
    "synthetic_sample",
    "write_synthetic_dataset",
]
