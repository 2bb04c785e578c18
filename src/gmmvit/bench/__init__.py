"""Benchmarks and the GPU check: tools that time the package on this machine, each one report.
``python -m gmmvit.bench`` (``make bench``) and ``python -m gmmvit.bench.gpu_check``."""
