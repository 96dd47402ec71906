"""Throughput benchmarks of flowactors against plain-Python baselines (``python -m benchmarks.run``)."""
