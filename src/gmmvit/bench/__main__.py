"""``python -m gmmvit.bench``: the benchmark suite (``gmmvit.bench.suite``)."""

from gmmvit.bench.suite import main

if __name__ == "__main__":
    main()
