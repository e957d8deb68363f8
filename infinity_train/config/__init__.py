"""Typed Hydra configuration: schema, composition with one-line errors, and validation."""

from infinity_train.config.compose import ConfigError, conf_dir, load_config, to_typed
from infinity_train.config.schema import TrainConfig
from infinity_train.config.validate import model_shape, validate

__all__ = ["ConfigError", "TrainConfig", "conf_dir", "load_config", "model_shape", "to_typed", "validate"]
