"""The one training loop (trainer.py), atomic checkpoints, inference and the progress bar; it knows
the strategy contract (``transferkit.strategy``) and no method family."""
