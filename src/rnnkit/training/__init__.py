"""Training: the Trainer, checkpoints, metrics and resume."""
