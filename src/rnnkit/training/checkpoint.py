"""Moved to ``rnnkit.checkpoint``; this module re-exports its names for code written before the move."""
from rnnkit.checkpoint import (FORMAT_VERSION, Checkpoint, RNGState, TrainingState, capture_rng_state, load,
                               load_checkpoint, load_training_state, restore_rng_state, save, verify_checkpoint)

__all__ = ["FORMAT_VERSION", "Checkpoint", "RNGState", "TrainingState", "capture_rng_state", "load",
           "load_checkpoint", "load_training_state", "restore_rng_state", "save", "verify_checkpoint"]
