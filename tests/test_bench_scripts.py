"""The pure helpers of the benchmark scripts (the scripts themselves take minutes on the default
model and are run by hand; a helper that crashes would lose that run)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_rl_step_times_pair_each_step_with_its_own_tokens():
    from bench_rl import after_first, step_times

    history = [
        {"loss": 1.0},
        {"step_time": 10.0, "num_tokens": 1000},
        {"step_time": 6.0, "num_tokens": 2500},
        {"step_time": 4.0, "num_tokens": 3500},
        {"train_runtime": 20.0},
    ]
    assert step_times(history) == [(10.0, 1000.0), (6.0, 1500.0), (4.0, 1000.0)]
    assert after_first(step_times(history)) == (5.0, 4.0)  # (6 + 4) / 2 s; 10 s per 2,500 tokens


def test_serve_percentile_picks_from_the_sorted_latencies():
    from bench_serve import percentile

    latencies = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(latencies, 0.5) == 3.0 and percentile(latencies, 0.95) == 5.0
