"""Recipes: a whole pipeline (data → training → evaluation → report) as one typed YAML file.

A recipe names the base model and an ordered mapping of *stages*. Each stage has a ``kind``
and that kind's settings — the same fields as the matching command's ``--config`` file
(``sft`` takes every ``rulewise train sft`` setting, ``rl`` every ``rulewise train rl`` one).
Stages refer to earlier stages' outputs with ``@NAME`` (the stage's main output: a model
directory, a data file, an eval run) or ``@NAME/FILE`` (a file inside it); a model field may
also say ``base`` (the recipe's ``model``) or name any model spec.

``budgets`` are named sets of overrides (``fast`` for the 2-core quickstart); ``--set
stages.sft.max_steps=50`` overrides any field. Validation happens before anything runs and
every error names the file, line and key (``stages.sft.max_step``).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from rulewise.config import apply_override, set_dotted
from rulewise.errors import RulewiseError
from rulewise.fileio import LocatedDocument, load_document, validation_error
from rulewise.pipeline.stages import STAGE_KINDS, StageKind, parse_reference
from rulewise.pipeline.stages.base import ACCEPTS


class RecipeHeader(BaseModel):
    """The top level of a recipe file; stages are validated one by one (see :func:`load_recipe`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="the recipe's name (runs/NAME by default)"
    )
    description: str = Field(default="", description="one paragraph on what the recipe does")
    model: str = Field(default="default", description="the base model stages call 'base'")
    out: str | None = Field(default=None, description="default output directory (runs/NAME)")
    budgets: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="named sets of stages.STAGE.FIELD overrides (--budget NAME)"
    )
    stages: dict[str, dict[str, Any]] = Field(min_length=1, description="the stages, in the order they run")


class Recipe(BaseModel):
    """A validated recipe: every stage typed, every reference pointing at an earlier stage."""

    name: str
    description: str
    model: str
    out: str
    source: str
    budgets: list[str]
    stages: dict[str, StageKind]

    def upstream(self, name: str) -> list[str]:
        """The stages ``name`` reads from, directly."""
        found = []
        for value in self.stages[name].references().values():
            ref = parse_reference(value)
            if ref is not None and ref[0] not in found:
                found.append(ref[0])
        return found

    def downstream(self, name: str) -> list[str]:
        """``name`` and every stage that depends on it, directly or not, in recipe order."""
        affected = {name}
        for stage in self.stages:
            if any(up in affected for up in self.upstream(stage)):
                affected.add(stage)
        return [stage for stage in self.stages if stage in affected]


def builtin_recipes() -> dict[str, Path]:
    """The recipes shipped inside the package, by name (``ascl``, ``gpu/ascl-qwen2.5-7b``, ...)."""
    root = Path(str(resources.files("rulewise") / "recipes"))
    return {str(path.relative_to(root).with_suffix("")): path for path in sorted(root.rglob("*.yaml"))}


def resolve_recipe_path(spec: str | Path) -> Path:
    path = Path(spec)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise RulewiseError("recipe file not found", path=path)
        return path
    builtins = builtin_recipes()
    if str(spec) in builtins:
        return builtins[str(spec)]
    raise RulewiseError(
        f"no recipe '{spec}'",
        field="recipe",
        hint=f"give a YAML file or one of the built-in recipes: {', '.join(builtins)}",
    )


def _override_key(assignment: str) -> str:
    return assignment.partition("=")[0].strip()


def _apply(data: dict[str, Any], overrides: Sequence[str], doc: LocatedDocument) -> None:
    for assignment in overrides:
        key = _override_key(assignment)
        if not key.startswith(("stages.", "model", "out", "description")):
            raise RulewiseError(
                f"override '{assignment}' must set a recipe key",
                path=doc.path,
                field=key or "--set",
                hint="e.g. model=HuggingFaceTB/SmolLM2-360M-Instruct or stages.sft.max_steps=50",
            )
        stage = key.split(".")[1] if key.startswith("stages.") and key.count(".") >= 1 else None
        if stage is not None and stage not in data.get("stages", {}):
            raise RulewiseError(
                f"override '{assignment}' names no stage of this recipe",
                path=doc.path,
                field=key,
                hint=f"stages: {', '.join(data.get('stages', {}))}",
            )
        apply_override(data, assignment)


def load_recipe(spec: str | Path, *, overrides: Sequence[str] = (), budget: str | None = None) -> Recipe:
    """Read, override and validate a recipe; any problem is a RulewiseError naming file, line and key."""
    path = resolve_recipe_path(spec)
    doc = load_document(path)
    if not isinstance(doc.data, dict):
        raise RulewiseError("a recipe must be a mapping with 'name' and 'stages'", path=path)
    try:
        header = RecipeHeader.model_validate(doc.data)
    except pydantic.ValidationError as exc:
        raise validation_error(exc, path=path, line_of=doc.line_of) from None
    data: dict[str, Any] = header.model_dump()
    if budget is not None:
        if budget not in header.budgets:
            raise RulewiseError(
                f"this recipe has no budget '{budget}'",
                path=path,
                field="budget",
                hint=f"budgets: {', '.join(header.budgets) or 'none'}",
            )
        for key, value in header.budgets[budget].items():
            if not key.startswith("stages.") or key.split(".")[1] not in data["stages"]:
                raise RulewiseError(
                    "a budget key must be stages.STAGE.FIELD",
                    path=path,
                    line=doc.line_of(("budgets", budget, key)),
                    field=f"budgets.{budget}.{key}",
                )
            set_dotted(data, key, value)
    _apply(data, overrides, doc)

    stages: dict[str, StageKind] = {}
    for name, raw in data["stages"].items():
        loc = ("stages", name)
        if not isinstance(raw, dict):
            raise RulewiseError(
                "a stage must be a mapping with a 'kind'",
                path=path,
                line=doc.line_of(loc),
                field=f"stages.{name}",
            )
        kind = raw.get("kind")
        if kind not in STAGE_KINDS:
            raise RulewiseError(
                f"unknown stage kind {kind!r}",
                path=path,
                line=doc.line_of((*loc, "kind")),
                field=f"stages.{name}.kind",
                hint=f"kinds: {', '.join(STAGE_KINDS)}",
            )
        try:
            stage = STAGE_KINDS[kind].model_validate(raw)
        except pydantic.ValidationError as exc:
            raise validation_error(exc, path=path, line_of=doc.line_of, prefix=loc) from None
        _check_references(name, stage, stages, path, doc)
        stages[name] = stage
    return Recipe(
        name=header.name,
        description=data["description"],
        model=data["model"],
        out=data["out"] or f"runs/{header.name}",
        source=str(path),
        budgets=list(header.budgets),
        stages=stages,
    )


def _check_references(
    name: str, stage: StageKind, earlier: dict[str, StageKind], path: Path, doc: LocatedDocument
) -> None:
    for field, value in stage.references().items():
        ref = parse_reference(value)
        if ref is None:
            continue
        target, _file = ref
        key = field.split("[")[0]
        where = {"path": path, "line": doc.line_of(("stages", name, key)), "field": f"stages.{name}.{field}"}
        if target not in earlier:
            raise RulewiseError(
                f"'{value}' refers to no stage defined before '{name}'",
                **where,
                hint=f"earlier stages: {', '.join(earlier) or 'none'}",
            )
        if earlier[target].output not in ACCEPTS[key]:
            kinds = sorted({kind for kind, cls in STAGE_KINDS.items() if cls.output in ACCEPTS[key]})
            raise RulewiseError(
                f"'{value}' is a {earlier[target].kind} stage, but {key} needs a {' or '.join(kinds)} stage",
                **where,
            )
