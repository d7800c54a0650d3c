"""Benchmarks of the service's hot paths against references measured in the same run (see
bench/run.py); never part of the test suite."""
