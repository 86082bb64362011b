"""Typed rulebook schema.

A rule says what is *not* allowed and, just as explicitly, what *is* allowed: the point of
consulting rules is to refuse precisely, not to refuse more. Examples show both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class RuleExample(BaseModel):
    """A short request and the behaviour the rule asks for."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    request: str = Field(min_length=1)
    verdict: Literal["refuse", "comply"]
    why: str = ""


class Rule(BaseModel):
    """One safety rule."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(pattern=r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)*$", description="e.g. WEAP-01")
    category: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="snake_case hazard area")
    title: str = Field(min_length=1)
    rule: str = Field(min_length=1, description="the rule itself, one or two sentences")
    disallowed: list[str] = Field(min_length=1, description="what must not be provided")
    allowed: list[str] = Field(min_length=1, description="explicitly permitted uses")
    examples: list[RuleExample] = Field(default_factory=list)

    @field_validator("disallowed", "allowed")
    @classmethod
    def _no_blank_items(cls, items: list[str]) -> list[str]:
        if any(not item.strip() for item in items):
            raise ValueError("items must be non-empty strings")
        return items

    def render(self) -> str:
        """The whole rule as text (what the context-distillation teacher pastes in its prompt)."""
        lines = [
            f"[{self.id}] {self.title} (category: {self.category})",
            f"Rule: {self.rule}",
            "Not allowed: " + "; ".join(self.disallowed),
            "Allowed: " + "; ".join(self.allowed),
        ]
        return "\n".join(lines)

    def clauses(self) -> list[Clause]:
        """Each disallowed and allowed item, and each example, as one retrievable clause."""
        items = [Clause(self, False, text) for text in self.disallowed]
        items += [Clause(self, True, text) for text in self.allowed]
        items += [
            Clause(self, ex.verdict == "comply", f'requests like "{ex.request}"', example=True)
            for ex in self.examples
        ]
        return items


@dataclass(frozen=True)
class Clause:
    """One item of a rule: something it allows or something it does not."""

    rule: Rule
    allowed: bool
    text: str
    example: bool = False  # a whole example request, not an item describing a kind of request

    def render(self) -> str:
        return f"{'Allowed' if self.allowed else 'Not allowed'}: {self.text}"


#: The id the tool names when no rule matches (``rulewise.rules.tool.NO_MATCH_MESSAGE``);
#: reserved, so a rulebook's own rule can never be mistaken for "no rule".
NO_RULE_ID = "GENERAL"


class Rulebook(BaseModel):
    """A named, versioned set of rules with unique ids."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1)
    version: str = "1"
    description: str = ""
    rules: list[Rule] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> Rulebook:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"duplicate rule id '{rule.id}'")
            if rule.id == NO_RULE_ID:
                raise ValueError(
                    f"rule id '{NO_RULE_ID}' is reserved: the tool names it when no rule matches"
                )
            seen.add(rule.id)
        return self

    def get(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id.upper():
                return rule
        raise KeyError(rule_id)

    @property
    def categories(self) -> list[str]:
        return sorted({rule.category for rule in self.rules})

    def with_sides_swapped(self, rule_id: str) -> Rulebook:
        """A counterfactual rulebook: rule ``rule_id`` forbids what it allowed and allows what it
        forbade (its examples' verdicts flip too). Synthesis uses it to show a student the same
        request under opposite rules, so the answer must follow the retrieved clause."""
        rule = self.get(rule_id)
        flipped = [
            example.model_copy(update={"verdict": "comply" if example.verdict == "refuse" else "refuse"})
            for example in rule.examples
        ]
        swapped = rule.model_copy(
            update={"allowed": rule.disallowed, "disallowed": rule.allowed, "examples": flipped}
        )
        rules = [swapped if r.id == rule.id else r for r in self.rules]
        return self.model_copy(update={"rules": rules, "version": f"{self.version}+swap-{rule.id}"})
