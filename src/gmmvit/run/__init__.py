"""One run in its folder: ``train(cfg)`` and what it uses - the step, the recipe, the compiler
settings, the device and its slots, the run's lock, its records and checkpoints, its tracker, mask
figures, profile and progress bar."""
