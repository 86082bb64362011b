"""Evaluation of the safety–utility trade-off: benchmarks, judges, metrics, runs and reports."""

#: Conversations an evaluation generates together. Why 32: a decode step of the token-level
#: engine mostly reads the weights, so more rows share that cost — on the quickstart's model
#: (2 cores, bf16) 16 rows gave 1.26 conversations/s and 32 gave 1.64; on 64 prompts 48 rows
#: were slower than 32 and 64 rows (one batch) only 7% faster, as attention over the longer
#: batch grows. ``rulewise eval``, eval stages and benchmarks/bench_eval.py all use it.
EVAL_BATCH_SIZE = 32
