"""Why our own continuous batcher: single-turn generation, ours vs transformers' ``generate_batch``.

    .venv/bin/python benchmarks/bench_cb.py [--prompts 16] [--max-new-tokens 128]

transformers ships continuous batching with paged attention (``model.generate_batch``; TRL can
use it for GRPO rollouts). Both generate greedily from the same rendered evaluation prompts
(system prompt, tool schema, user turn) with the default model in bf16 where the CPU has it,
all prompts at once; transformers' is timed twice (its first call sets up its cache).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_eval import load_prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args()

    from transformers import GenerationConfig

    from rulewise.cli.common import quiet_libraries
    from rulewise.generation import HFBackend, LoopConfig, build_generator
    from rulewise.models import load_model
    from rulewise.runtime import configure_threads

    quiet_libraries()
    threads = configure_threads()
    loaded = load_model("default")
    tokenizer = loaded.tokenizer
    generator = build_generator(loaded, loop=LoopConfig(max_new_tokens=args.max_new_tokens))
    prompts = [generator.render(generator.start(p)) for p in load_prompts(args.prompts)]
    backend = HFBackend(loaded.model, tokenizer)
    backend.complete(prompts[:2], 8, stop_at_tool_call=False)  # warm-up
    start = time.perf_counter()
    ours = backend.complete(prompts, args.max_new_tokens, stop_at_tool_call=False)
    seconds = time.perf_counter() - start
    print(f"default model, {len(prompts)} prompts, {args.max_new_tokens} new tokens, {threads} threads")
    print(f"rulewise continuous batcher : {seconds:6.1f} s, {sum(c.num_tokens for c in ours)} tokens")
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens,
        do_sample=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    for attempt in ("first", "second"):
        start = time.perf_counter()
        theirs = loaded.model.generate_batch(ids, generation_config=config, warmup=False)
        took = time.perf_counter() - start
        tokens = sum(len(r.generated_tokens) for r in theirs.values())
        print(
            f"transformers generate_batch ({attempt}) : {took:6.1f} s, {tokens} tokens ({took / seconds:.1f}x ours)"
        )


if __name__ == "__main__":
    main()
