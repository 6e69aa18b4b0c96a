"""Moved to ``rnnkit.checkpoint.state``; re-exported here for code written before the move."""
from rnnkit.checkpoint.state import (RNGState, TrainingState, capture_rng_state, restore_rng_state,
                                     training_state_from_json, training_state_to_json)

__all__ = ["RNGState", "TrainingState", "capture_rng_state", "restore_rng_state", "training_state_from_json",
           "training_state_to_json"]
