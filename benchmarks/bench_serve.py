"""Serving throughput: N concurrent openai clients against `rulewise serve` vs the same requests
sent one at a time, on one server, in one run.

    .venv/bin/python benchmarks/bench_serve.py [--clients 8] [--requests 24] [--max-new-tokens 128] [--model default]

The server is the real one (FastAPI + uvicorn on a free loopback port, the rule tool running
server-side, the audit log written); the clients are the real `openai` client on threads. It
prints requests/s and p50/p95 latency for both ways and their throughput ratio. Target: >= 3x at
8 concurrent clients. Prompts: StrongREJECT and XSTest from ../shared/data when present, else a
built-in list.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_eval import load_prompts


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=24, help="per way of sending")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args()

    import openai

    from rulewise.cli.common import quiet_libraries
    from rulewise.runtime import configure_threads
    from rulewise.serving.server import ServerThread, ServeSettings, build_server

    quiet_libraries()
    threads = configure_threads()
    prompts = load_prompts(args.requests)
    audit = Path(tempfile.mkdtemp()) / "audit.jsonl"
    settings = ServeSettings(
        model=args.model,
        port=0,
        audit_log=str(audit),
        max_new_tokens=args.max_new_tokens,
        batch_size=args.clients,
        max_concurrent=args.clients,
        reload_interval=0,
    )
    server = build_server(settings, log=lambda line: None)
    with ServerThread(server) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)

        def ask(prompt: str) -> float:
            start = time.perf_counter()
            client.chat.completions.create(model=args.model, messages=[{"role": "user", "content": prompt}])
            return time.perf_counter() - start

        ask(prompts[0])  # warm up: first-call costs are not serving throughput

        start = time.perf_counter()
        sequential = [ask(p) for p in prompts]
        sequential_wall = time.perf_counter() - start

        concurrent: list[float] = []
        queue = list(prompts)
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    prompt = queue.pop()
                seconds = ask(prompt)
                with lock:
                    concurrent.append(seconds)

        start = time.perf_counter()
        workers = [threading.Thread(target=worker) for _ in range(args.clients)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        concurrent_wall = time.perf_counter() - start
        reuse = server.engine.generator.backend.describe()

    print(
        f"{args.model}, {len(prompts)} requests each way, rule tool server-side, {args.max_new_tokens} new tokens "
        f"per turn, {threads} threads; {reuse}"
    )
    for name, wall, latencies in (
        ("one at a time", sequential_wall, sequential),
        (f"{args.clients} concurrent clients", concurrent_wall, concurrent),
    ):
        print(
            f"  {name:>22}: {len(latencies) / wall:.2f} requests/s, latency p50 {statistics.median(latencies):.1f} s, "
            f"p95 {percentile(latencies, 0.95):.1f} s"
        )
    print(
        f"  throughput ratio (concurrent / one at a time): {sequential_wall / concurrent_wall:.2f}x (target >= 3x)"
    )


if __name__ == "__main__":
    main()
