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
    """``vllm.LLM.generate`` over rendered prompts; stops at the end of the turn or after ``</tool_call>``."""

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
        self.llm = llm if llm is not None else vllm.LLM(model=model, seed=seed, **engine_args)

    def _params(self, max_new_tokens: int, stop_at_tool_call: bool) -> Any:
        return self._vllm.SamplingParams(
            max_tokens=max_new_tokens,
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            repetition_penalty=self.sampling.repetition_penalty,
            stop=[TOOL_CALL_CLOSE] if stop_at_tool_call else None,
            include_stop_str_in_output=True,
            seed=self.seed,
        )

    def complete(self, prompts: list[str], max_new_tokens: int, stop_at_tool_call: bool) -> list[Completion]:
        outputs = self.llm.generate(prompts, self._params(max_new_tokens, stop_at_tool_call), use_tqdm=False)
        return [self._to_completion(output.outputs[0]) for output in outputs]

    @staticmethod
    def _to_completion(choice: Any) -> Completion:
        tokens = len(choice.token_ids)
        if choice.finish_reason == "length":
            return Completion(text=choice.text, num_tokens=tokens, stop="length")
        if choice.stop_reason == TOOL_CALL_CLOSE:
            return Completion(text=choice.text, num_tokens=tokens, stop="tool_call")
        return Completion(text=choice.text, num_tokens=tokens, stop="eos")
