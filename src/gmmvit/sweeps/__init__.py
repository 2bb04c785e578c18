"""Many runs, read back from ``multirun/``: the run-folder reader, the table's statistics and
renderers, ``make status``, the expansion of a sweep into jobs, the W&B dashboard, and the cost
estimate of the launchers of whole grids (``make paper``, ``make ablations``: ``gmmvit.config``)."""
