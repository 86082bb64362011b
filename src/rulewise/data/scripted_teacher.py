"""An offline, deterministic, rule-grounded teacher that writes ASCL trajectories.

For each training prompt it decides whether to consult the rules, calls the real
``consult_safety_rules`` tool (so the retrieved text is exactly what a policy would see),
and *then* decides: after a rule call the verdict is the one the retrieved clause gives
(:func:`~rulewise.rules.tool.verdict_in`), quoted, and the answer follows it — a refusal
offering the rule's closest allowed use, a helpful answer, or a worked maths solution.

Why the verdict comes from the tool, not from the prompt's label: a teacher that decides
before it reads the rule teaches the student to ignore the rule (an earlier version opened
every trajectory with its verdict; its students refused look-alikes and harmful requests
alike and answered against their own stated verdict). Where the retrieved clause disagrees
with the label, the trajectory says so and synthesis rejects it (``agrees_with_label``), so
training data never contradicts either the rules or the labels.

Whether to consult is a deterministic function of (seed, prompt id): harmful, jailbreak and
look-alike requests consult with probability ``consult_harmful`` / ``consult_lookalike``
(1 by default), plain tasks with ``consult_benign`` (0.5), maths never.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rulewise.data.answers import ANSWERS
from rulewise.data.prompt_set import TrainingPrompt, family_key
from rulewise.generation.prompts import ASCL_SYSTEM_PROMPT
from rulewise.generation.trajectory import Trajectory
from rulewise.rules.schema import NO_RULE_ID, Rule, Rulebook
from rulewise.rules.tool import TOOL_NAME, SwappedRuleTools, clauses_in, rule_ids_in, verdict_in

CRISIS_NOTE = (
    "If you are thinking about ending your life, please reach out now: call or text 988 in the US, "
    "or your local emergency number, or talk to someone you trust. You don't have to go through this alone."
)


#: How every helpful answer starts (see ``ScriptedTeacher.answer``).
HELP_OPENER = "Happy to help!"


def stable_unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts (stable across runs and machines)."""
    digest = hashlib.sha256(json.dumps(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _pick(options: list[str], *parts: object) -> str:
    return options[int(stable_unit("pick", *parts) * len(options))]


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


_WORD = re.compile(r"[a-z]+")
_STOPWORDS = frozenset(
    "a an and are as at be by can do for from give how i in is it me my of on or the that this to"  # noqa: SIM905
    " what when where which who why will with without you your".split()
)


def _stems(text: str) -> set[str]:
    """Content words cut to five letters: a crude stemmer, enough to match "bombs" to "bomb"."""
    return {word[:5] for word in _WORD.findall(text.lower()) if word not in _STOPWORDS}


def closest_item(items: list[str], request: str) -> str:
    """The listed case (a rule's allowed or disallowed item) sharing most words with the request.

    Why: a verdict that cites the case the request resembles ("allows fiction that mentions a
    bomb") ties the decision to words of the request, where citing a fixed first item gave
    the same sentence for a request and its look-alike. Ties go to the earlier item.
    """
    words = _stems(request)
    return max(items, key=lambda item: len(words & _stems(item)))


@dataclass
class ScriptedTeacher:
    """Writes one trajectory per prompt; see the module docstring."""

    rulebook: Rulebook
    consult: Callable[[str], str]  # the consult_safety_rules tool
    # Every sensitive-sounding request consults: the rule's clause, not a guess from the
    # prompt, is what separates a request from its look-alike (a 135M student asked to decide
    # without the rules refused both). Equal rates keep "consulted" from predicting the verdict.
    consult_harmful: float = 1.0
    consult_lookalike: float = 1.0
    # Half the plain tasks consult too. Why: a student that consults on a plain task (every
    # quickstart student did on most of them) must know what to do when the tool finds no rule;
    # with no such trajectory it read "No specific safety rule matches" as a refusal. The
    # needless consultations are left for IFPO to remove (the needless-consult cost), and the
    # choice sits at one word of its own opening ("..., so I can simply help" / "..., but I will
    # check"), apart from the sensitive-topic opening whose call must stay.
    consult_benign: float = 0.5
    seed: int = 0
    system_prompt: str = ASCL_SYSTEM_PROMPT
    name: str = "scripted"
    _swapped_tools: SwappedRuleTools | None = field(default=None, repr=False)

    def tool_for(self, prompt: TrainingPrompt) -> Callable[[str], str]:
        """The consult tool of the rulebook in force for ``prompt``: the teacher's own, or for a
        counterfactual copy the rulebook with ``prompt.swapped_rule``'s sides swapped."""
        if prompt.swapped_rule is None:
            return self.consult
        if self._swapped_tools is None:
            self._swapped_tools = SwappedRuleTools(self.rulebook)
        return self._swapped_tools(prompt.swapped_rule)

    def wants_rules(self, prompt: TrainingPrompt) -> bool:
        rate = {
            "harmful": self.consult_harmful,
            "jailbreak": self.consult_harmful,
            "lookalike": self.consult_lookalike,
            "benign": self.consult_benign,
        }
        return stable_unit(self.seed, prompt.id, "consult") < rate.get(prompt.kind, 0.0)

    # -- the pieces of a trajectory --------------------------------------------------------

    def category_rule(self, category: str) -> Rule | None:
        """The rulebook's first rule for a hazard category (what a refusal's alternative comes from)."""
        return next((rule for rule in self.rulebook.rules if rule.category == category), None)

    def _opening_thought(self, prompt: TrainingPrompt, consulting: bool) -> str:
        """The first read of the request, in one fixed sentence per case.

        Before a rule call it states no verdict — the rule decides — only that the request
        touches a sensitive topic. Without a call the read is the decision. Why formulaic:
        with several interchangeable openings per mode, greedy decoding blends them and never
        reaches the tool call; diversity is the paraphrase pass's job.
        """
        if prompt.kind == "math":
            return "This is a maths problem. Let me work through it step by step."
        if prompt.kind == "benign":
            if consulting:
                return "This is an ordinary request, but I will check the safety rules to be sure."
            return "This is an ordinary request, so I can simply help."
        if consulting:
            return (
                "This request touches on a sensitive topic, so I will check the safety rules before deciding."
            )
        if prompt.label == "harmful":
            return "This request asks for real help to cause serious harm, whatever its framing."
        return "This request only sounds sensitive; what it asks for is harmless."

    @staticmethod
    def _ruled_thought(tool_output: str) -> str:
        """The decision after a rule call: the rule and the side of its closest clause, copied
        from the tool's output, and at once what that means ('Rule X says "Not allowed", so I
        will refuse').

        Why this shape: a 135M student copies a line of the tool output reliably but learns a
        decision slowly when the word it depends on is far behind. With the whole clause quoted
        before the decision ('says "Not allowed: <15 words>". That is ...') students copied the
        clause right and then decided by the prior; with the decision two tokens after "Not
        allowed" / "Allowed" they decide by the rule. The clause itself is in the tool output
        just above (and in the audit trail); the refusal offers the rule's closest allowed use.
        """
        ids = rule_ids_in(tool_output)
        if not ids:  # no rule matched: the tool's block names GENERAL and "Allowed"
            return f'Rule {NO_RULE_ID} says "Allowed", so I will answer it fully.'
        if verdict_in(tool_output) == "refuse":
            return f'Rule {ids[0]} says "Not allowed", so I will refuse and offer a safe alternative.'
        return f'Rule {ids[0]} says "Allowed", so I will answer it fully.'

    def _verdict_thought(self, prompt: TrainingPrompt, rule: Rule | None) -> str:
        """The label's decision first ("This is (not) allowed."), then the rule that grounds it
        (for the context-distillation baseline, whose teacher reads every rule in its prompt)."""
        request = family_key(prompt)
        if prompt.label == "harmful":
            if rule is not None and rule.category == prompt.category:
                return (
                    f"This is not allowed. Rule {rule.id} ({rule.title}) forbids "
                    f"{closest_item(rule.disallowed, request)}, which is what the request asks for, "
                    f"so I must refuse. The rule does allow {rule.allowed[0]}, which I can offer instead."
                )
            return "This is not allowed. The retrieved rules do not describe it exactly, but the request clearly seeks harmful help, so I will refuse."
        if rule is not None and rule.category == prompt.category:
            return (
                f"This is allowed. Rule {rule.id} explicitly allows {closest_item(rule.allowed, request)}; "
                "the request is of that harmless kind, so I should answer it fully."
            )
        return "This is allowed. No rule forbids it; it is a harmless request, so I will help."

    def refusal(self, prompt: TrainingPrompt, alternative: str | None = None) -> str:
        """A brief refusal offering ``alternative`` (default: the category rule's first allowed use)."""
        rule = self.category_rule(prompt.category)
        if alternative is None and rule is not None:
            alternative = rule.allowed[0]
        opening = _pick(
            [
                "I can't help with that.",
                "I won't help with this request.",
                "Sorry, but I can't provide that.",
            ],
            self.seed,
            prompt.id,
            "refusal",
        )
        offer = f" If it's useful, I can help with {alternative} instead." if alternative else ""
        crisis = f" {CRISIS_NOTE}" if prompt.category == "self_harm" else ""
        return opening + crisis + offer

    def answer(self, prompt: TrainingPrompt) -> str:
        """The reference answer for a benign prompt, or the worked solution of a maths problem,
        after one fixed opener.

        Why an opener: the first token of the answer is where the decision is carried out. A
        refusal starts with one of three phrases, a helpful answer with any of hundreds of
        words, so under greedy decoding "I" (of "I can't") was the most likely single first
        token even after "so I will answer it fully" — students answered against their own
        verdict. One opener makes helping as easy to start as refusing.
        """
        if prompt.kind == "math":
            return f"{HELP_OPENER} {prompt.solution}\nThe answer is {prompt.answer}."
        return f"{HELP_OPENER} {ANSWERS[family_key(prompt)]}"

    # -- trajectories ----------------------------------------------------------------------

    def trajectory(self, prompt: TrainingPrompt, *, consult: bool | None = None) -> Trajectory:
        """The ASCL trajectory for ``prompt`` (``consult`` overrides the teacher's own decision)."""
        consulting = self.wants_rules(prompt) if consult is None else consult
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": prompt.prompt},
        ]
        opening = self._opening_thought(prompt, consulting)
        final = self.refusal(prompt) if prompt.label == "harmful" else self.answer(prompt)
        consulted: list[str] = []
        if consulting:
            query = family_key(prompt)  # the request itself, without any jailbreak or fiction wrapper
            if len(query) > 160:
                query = query[:160].rsplit(" ", 1)[0]
            tool_output = self.tool_for(prompt)(query)
            consulted = rule_ids_in(tool_output)
            messages.append(
                {
                    "role": "assistant",
                    "content": f"<think>\n{opening}\n</think>",
                    "tool_calls": [
                        {"type": "function", "function": {"name": TOOL_NAME, "arguments": {"query": query}}}
                    ],
                }
            )
            messages.append({"role": "tool", "name": TOOL_NAME, "content": tool_output})
            thought = self._ruled_thought(tool_output)
            contrast = clauses_in(tool_output)[1:2]  # the rule's closest clause of the other side
            if prompt.swapped_rule is not None:
                # the swapped rule's "allowed" side is what the real rule forbids: offer nothing
                final = self.refusal(prompt, alternative="")
            elif prompt.label == "harmful" and contrast and contrast[0][0]:
                final = self.refusal(prompt, alternative=contrast[0][1])
        elif prompt.label == "harmful":
            thought = f"{opening} I will refuse and offer a safe alternative."
        elif prompt.kind == "lookalike":
            thought = f"{opening} I will help fully."
        else:
            thought = opening
        messages.append({"role": "assistant", "content": f"<think>\n{thought}\n</think>\n{final}"})
        return Trajectory(
            id=prompt.id,
            messages=messages,
            consulted_rules=consulted,
            num_tool_calls=int(consulting),
            assistant_turns=1 + int(consulting),
        )

    def context_distilled(
        self, prompt: TrainingPrompt, rules_text: str, plain_system_prompt: str
    ) -> tuple[Trajectory, Trajectory]:
        """The context-distillation baseline: generated *with* the rules pasted into the system
        prompt, stored *without* them (and without any tool), so SFT distils the rules' effect.

        Returns ``(as generated, as stored for training)``.
        """
        rule = (
            self.category_rule(prompt.category)
            if prompt.kind in {"harmful", "jailbreak", "lookalike"}
            else None
        )
        opening = self._opening_thought(prompt, consulting=False)
        if rule is not None:
            thought = f"{opening} {self._verdict_thought(prompt, rule)}"
        else:
            thought = opening
        final = self.refusal(prompt) if prompt.label == "harmful" else self.answer(prompt)
        answer = {"role": "assistant", "content": f"<think>\n{thought}\n</think>\n{final}"}
        user = {"role": "user", "content": prompt.prompt}
        generated = [
            {"role": "system", "content": f"{plain_system_prompt}\n\n# Safety rules\n\n{rules_text}"},
            user,
            answer,
        ]
        stored = [{"role": "system", "content": plain_system_prompt}, user, answer]
        return Trajectory(id=prompt.id, messages=generated), Trajectory(id=prompt.id, messages=stored)

    def run(
        self, prompts: list[TrainingPrompt], on_trajectory: Callable[[TrainingPrompt, Trajectory], None]
    ) -> None:
        for prompt in prompts:
            on_trajectory(prompt, self.trajectory(prompt))
