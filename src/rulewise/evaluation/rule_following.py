"""Does the rule text drive the decision? Evaluate the same prompts under the original rulebook
and under an edited one, and compare.

ASCL's claim over baking rules into weights is that a deployer can change a rule and the model
follows without retraining. That holds only if the model's answer depends on what the tool
returns. For an edit (a rule removed, an *allowed* clause added, a topic forbidden), the
prompts it **affects** are those on which the rulebook's own verdict changes: the tool, queried
with the prompt, returns a clause of the other side (or, for a removed rule, no longer the
forbidding one). Two shares say whether the model follows:

* **followed**: of the affected prompts, those whose answer under the edited rulebook does what
  the edited verdict says (refuse / comply), as judged by the offline content judge;
* **changed**: of the unaffected prompts, those whose answer differs between the two runs
  (noise the edit should not cause).

The affected set is decided by querying the tool with the prompt itself, not with the model's
own query: it is a property of the edit and the prompts, the same for every model compared.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, RootModel

from rulewise.evaluation.verdicts import outcome
from rulewise.rules.loading import load_rulebook
from rulewise.rules.retrieval import build_retriever
from rulewise.rules.tool import make_consult_tool, verdict_in


class RuleEdit(BaseModel):
    """One change to a rulebook, as a deployer would make it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="a short name for the table")
    kind: Literal["remove", "allow", "disallow", "forbid"] = Field(
        description="remove: delete rule `rule`; allow / disallow: put `clauses` first in its allowed / "
        "disallowed list; forbid: add a new rule `rule` in `category` whose disallowed list is `clauses`"
    )
    rule: str = Field(description="the rule id edited, removed or created")
    clauses: list[str] = Field(default_factory=list, description="clauses added (allow, forbid)")
    category: str = Field(default="custom", description="category of a new rule (forbid)")

    def apply(self, data: dict[str, Any]) -> dict[str, Any]:
        """The edited rulebook document (``data`` as loaded from YAML, left unchanged)."""
        data = copy.deepcopy(data)
        rules = data["rules"]
        ids = [rule["id"] for rule in rules]
        if self.kind == "forbid":
            rules.append(
                {
                    "id": self.rule,
                    "category": self.category,
                    "title": self.name,
                    "rule": "Do not help with: " + "; ".join(self.clauses) + ".",
                    "disallowed": list(self.clauses),
                    "allowed": ["general, high-level discussion of the topic's existence"],
                }
            )
            return data
        if self.rule not in ids:
            raise ValueError(f"edit '{self.name}': no rule '{self.rule}' in the rulebook")
        rule = rules[ids.index(self.rule)]
        if self.kind == "remove":
            rules.remove(rule)
        else:
            side = "allowed" if self.kind == "allow" else "disallowed"
            rule[side] = self.clauses + rule[side]
        return data


class RuleEditList(RootModel[list[RuleEdit]]):
    """A file of edits."""


def load_edits(path: str | Path | None = None) -> list[RuleEdit]:
    """Edits from a YAML list (``None``: the shipped ones, for the default rulebook and the
    development split); errors name the file, line and field."""
    from importlib import resources

    from rulewise.fileio import load_document, validate_document

    source = path or Path(str(resources.files("rulewise.evaluation") / "data" / "rule_edits.yaml"))
    return validate_document(RuleEditList, load_document(source)).root


def write_edited(source: str | Path, edit: RuleEdit, out: Path) -> Path:
    """Write the edited rulebook to ``out`` and check that it loads."""
    path = Path(source)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(edit.apply(data), sort_keys=False, allow_unicode=True), encoding="utf-8")
    load_rulebook(out)
    return out


def rulebook_verdicts(prompts: dict[str, str], rulebook: str | Path) -> dict[str, str | None]:
    """The verdict the tool gives, queried with each prompt: refuse, comply or None."""
    tool = make_consult_tool(build_retriever(load_rulebook(rulebook)), k=1)
    return {key: verdict_in(tool(prompt)) for key, prompt in prompts.items()}


@dataclass
class EditEffect:
    name: str
    affected: int
    followed: int
    unaffected: int
    changed: int

    @property
    def followed_share(self) -> float | None:
        return self.followed / self.affected if self.affected else None

    @property
    def changed_share(self) -> float | None:
        return self.changed / self.unaffected if self.unaffected else None


def answer_outcomes(records: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Record id -> what the answer did (refuse / comply / partial), maths left out."""
    return {r["id"]: outcome(r["verdict"]) for r in records if r.get("task") != "math"}


def edit_effect(
    name: str,
    before_verdicts: dict[str, str | None],
    after_verdicts: dict[str, str | None],
    before_answers: dict[str, str],
    after_answers: dict[str, str],
) -> EditEffect:
    """Count followed and changed prompts (see the module docstring); ids are the answered ones."""
    affected = followed = unaffected = changed = 0
    for key in before_answers.keys() & after_answers.keys():
        before, after = before_verdicts.get(key) or "comply", after_verdicts.get(key) or "comply"
        if before != after:
            affected += 1
            followed += after_answers[key] == after
        else:
            unaffected += 1
            changed += after_answers[key] != before_answers[key]
    return EditEffect(name, affected, followed, unaffected, changed)
