"""Evaluation of the safety–utility trade-off: benchmarks, judges, metrics, runs and reports."""

#: Conversations an evaluation generates together. Why 32: a decode step of the token-level
#: engine mostly reads the weights, so more rows share that cost — on the quickstart's model
#: (2 cores, bf16) 16 rows gave 1.26 conversations/s and 32 gave 1.64, while 48 and 64 gave no
#: more (attention over the longer batch grows); keys/values for 32 rows of the default model
#: take tens of MB. ``rulewise eval``, eval stages and benchmarks/bench_eval.py all use it.
EVAL_BATCH_SIZE = 32
