"""Evaluation of the safety–utility trade-off: benchmarks, judges, metrics, runs and reports."""
