"""Orchestration of the multi-model runs, above the training loop and the strategy families:
``learner`` (learn a stream of tasks: one ``Trainer.fit`` per task, evaluation and a checkpoint
after each), ``continual`` (``transferkit continual``: config -> stream, model, strategies -> run
directory) and ``multitask`` (``transferkit multitask``: config -> every weighter x seed and the
single-task baselines -> run directory)."""
