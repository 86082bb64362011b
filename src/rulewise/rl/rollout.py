"""What one RL rollout wrote, turn by turn, as the rewards and the mode detector see it.

TRL hands reward functions parsed messages, in which a malformed or cut-off tool call is
folded into plain text and the trailing text after a call is gone. The rewards here need
exactly those cases (a truncated call still sets the rollout's *mode*; text after a call is a
format error), so the trainer decodes the model-written token runs itself (``tool_mask == 1``)
and builds a :class:`Rollout` from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from rulewise.evaluation.verdicts import announces_rule_check
from rulewise.generation.parsing import (
    THINK_CLOSE,
    THINK_OPEN,
    ParsedToolCall,
    ParsedTurn,
    has_markup,
    parse_assistant_turn,
    split_reasoning,
)
from rulewise.rules.tool import TOOL_NAME


def model_written_runs(token_ids: Sequence[int], tool_mask: Sequence[int] | None) -> list[list[int]]:
    """Split a completion into the contiguous runs the model wrote (mask 1), dropping tool results (mask 0)."""
    if tool_mask is None:
        return [list(token_ids)]
    runs: list[list[int]] = []
    previous = 0
    for token, written in zip(token_ids, tool_mask, strict=True):
        if written:
            if not previous:
                runs.append([])
            runs[-1].append(token)
        previous = written
    return runs


@dataclass(frozen=True)
class Rollout:
    """The assistant turns of one rollout, raw (tool-call markup included, end marker possibly present).

    ``finished`` is False when the last turn hit the token limit before the end-of-turn marker.
    """

    turns: tuple[str, ...]
    finished: bool = True
    end_marker: str = "<|im_end|>"

    @cached_property
    def parsed(self) -> list[ParsedTurn]:
        return [parse_assistant_turn(turn, end_markers=(self.end_marker,)) for turn in self.turns]

    @cached_property
    def calls(self) -> list[ParsedToolCall]:
        """Every call the model wrote, closed or cut off, well-formed or not."""
        return [call for turn in self.parsed for call in (*turn.tool_calls, turn.unclosed_call) if call]

    @property
    def consulted(self) -> bool:
        """The rollout's mode: it tried a tool call, even a malformed or cut-off one.

        The rule tool is the only tool offered, so any attempt is an attempt to consult.
        """
        return bool(self.calls)

    @property
    def skipped_announced_check(self) -> bool:
        """The reasoning says it will check the rules, and no call follows.

        Why it matters for RL: the student's consult decision is carried by the tool-call token
        after "so I will check the safety rules before deciding." — the same context on every
        prompt. Rewarding a rollout that drops that token on a plain task teaches dropping it on
        harmful requests too (measured: one IFPO step on one plain prompt took the harmful consult
        rate of the next step's rollouts from 100% to 25%). A rollout that skips the rules must
        decide so in words that read the request ("This is an ordinary request, so I can simply
        help").
        """
        return not self.consulted and any(
            announces_rule_check(split_reasoning(turn.content)[0]) for turn in self.parsed
        )

    @property
    def _answer_turn(self) -> ParsedTurn | None:
        """The last turn when it is an answer (it makes no tool call)."""
        last = self.parsed[-1] if self.parsed else None
        return last if last and not last.tool_calls and not last.unclosed_call else None

    @property
    def answered(self) -> bool:
        """The last turn is an answer (no tool call) that the model ended itself."""
        return self.finished and self._answer_turn is not None

    @property
    def final_text(self) -> str:
        """The last turn's content, reasoning included (what a judge reads; it skips ``<think>``)."""
        return self._answer_turn.content if self._answer_turn else ""

    @property
    def final_answer(self) -> str:
        """The answer of the last turn, without its reasoning."""
        return split_reasoning(self.final_text)[1]

    def format_checks(self) -> dict[str, bool]:
        """Named structural checks; the format reward is the share that pass.

        - ``answered``: the rollout ends with an answer the model finished itself;
        - ``reasoning_closed``: every ``<think>`` that was opened was closed;
        - ``answer_after_reasoning``: the final answer is not empty once reasoning is removed;
        - ``clean_answer``: no turn markup is left in the final answer (a stray ``</think>`` after
          it, as ``rulewise eval``'s well-formed rate counts);
        - ``valid_tool_calls``: every call is well-formed JSON naming the rule tool with a ``query``;
        - ``nothing_after_call``: no text follows a tool call in the same turn.
        """
        return {
            "answered": self.answered,
            "reasoning_closed": all(
                turn.content.count(THINK_OPEN) <= turn.content.count(THINK_CLOSE) for turn in self.parsed
            ),
            "answer_after_reasoning": bool(self.final_answer.strip()),
            "clean_answer": not has_markup(self.final_answer),
            "valid_tool_calls": all(
                call.error is None
                and call.name == TOOL_NAME
                and isinstance((call.arguments or {}).get("query"), str)
                for call in self.calls
            ),
            "nothing_after_call": not any(turn.trailing_text for turn in self.parsed),
        }
