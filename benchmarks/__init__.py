"""Benchmarks of setup-tool against hand-written SQL; run `python -m benchmarks.run --help`."""
