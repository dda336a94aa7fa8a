"""Benchmarks: `python -m bench` lists and runs them. They measure; they never assert timings."""
