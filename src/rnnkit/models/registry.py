"""Moved to ``rnnkit.checkpoint.registry``; re-exported here for code written before the move."""
from rnnkit.checkpoint.registry import (build_model, config_from_json, config_to_json, decode_json, encode_json,
                                        model_class, model_name, register_config, register_model, registered_models)

__all__ = ["build_model", "config_from_json", "config_to_json", "decode_json", "encode_json", "model_class",
           "model_name", "register_config", "register_model", "registered_models"]
