"""vLLM as a completion backend for the tool-use loop (GPU evaluation and data generation).

The loop renders every prompt itself (so tool schemas, tool results and the chat template are
exactly those of the HF backend) and asks the backend only to continue text; vLLM does that
with continuous batching and paged attention, which on a GPU is an order of magnitude faster
than ``model.generate``. Install with ``pip install 'rulewise[vllm]'``.
"""

from __future__ import annotations

from typing import Any

from rulewise.errors import RulewiseError
from rulewise.generation.backends import Completion, SamplingConfig
from rulewise.generation.parsing import TOOL_CALL_CLOSE


class VLLMBackend:
    """``vllm.LLM.generate`` over rendered prompts; stops at the end of the turn or after ``</tool_call>``.

    It matches the transformers backend exactly where that matters:

    - prompts go in as token ids, tokenized without special tokens (the chat template already
      wrote them; vLLM's own text path would add a BOS token a second time);
    - special tokens stay in the output text (``<tool_call>`` is a special token in some
      tokenizers, and the loop's parser needs it), only a trailing end-of-turn token is cut;
    - every request gets its own seed (``seed`` + a running request number), so k samples of
      one prompt differ and a rerun with the same seed repeats them.
    """

    def __init__(
        self,
        model: str,
        *,
        sampling: SamplingConfig | None = None,
        seed: int = 0,
        llm: Any = None,
        **engine_args: Any,
    ) -> None:
        try:
            import vllm
        except ImportError:
            raise RulewiseError(
                "the vLLM backend needs vLLM", hint="pip install 'rulewise[vllm]' on a machine with a GPU"
            ) from None
        self._vllm = vllm
        self.sampling = sampling or SamplingConfig()
        self.seed = seed
        self.requests = 0  # requests sent so far: the next one's seed is seed + requests
        self.llm = llm if llm is not None else vllm.LLM(model=model, seed=seed, **engine_args)
        self.tokenizer = self.llm.get_tokenizer()

    def _params(self, max_new_tokens: int, stop_at_tool_call: bool, seed: int) -> Any:
        return self._vllm.SamplingParams(
            max_tokens=max_new_tokens,
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            repetition_penalty=self.sampling.repetition_penalty,
            stop=[TOOL_CALL_CLOSE] if stop_at_tool_call else None,
            include_stop_str_in_output=True,
            skip_special_tokens=False,
            seed=seed,
        )

    def prompt_token_ids(self, prompt: str) -> list[int]:
        """The ids the transformers backend feeds for ``prompt`` (no special tokens added)."""
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def complete(self, prompts: list[str], max_new_tokens: int, stop_at_tool_call: bool) -> list[Completion]:
        inputs = [{"prompt_token_ids": self.prompt_token_ids(p)} for p in prompts]
        params = [
            self._params(max_new_tokens, stop_at_tool_call, self.seed + self.requests + i)
            for i in range(len(prompts))
        ]
        self.requests += len(prompts)
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        return [self._to_completion(output.outputs[0]) for output in outputs]

    def _to_completion(self, choice: Any) -> Completion:
        tokens = len(choice.token_ids)
        text = choice.text
        eos = self.tokenizer.eos_token
        if eos and text.endswith(eos):  # kept by skip_special_tokens=False; the HF backend cuts it too
            text = text[: -len(eos)]
        if choice.finish_reason == "length":
            return Completion(text=text, num_tokens=tokens, stop="length")
        if choice.stop_reason == TOOL_CALL_CLOSE:
            return Completion(text=text, num_tokens=tokens, stop="tool_call")
        return Completion(text=text, num_tokens=tokens, stop="eos")
