"""Loading rulebooks from YAML/JSON with errors that name file, line, rule id and field."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from rulewise.errors import RulewiseError
from rulewise.fileio import Loc, LocatedDocument, load_document, validate_document
from rulewise.rules.schema import Rulebook

DEFAULT_RULEBOOK = "default"


def default_rulebook_path() -> Path:
    """Path of the rulebook shipped with the package."""
    return Path(str(resources.files("rulewise.rules") / "data" / "default.yaml"))


def _describe_rule(data: Any, loc: Loc) -> str:
    """Name the rule an error is in, e.g. ``rule 'WEAP-01': ``."""
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        try:
            rule_id = data["rules"][loc[1]].get("id")
        except (KeyError, IndexError, TypeError, AttributeError):
            rule_id = None
        return f"rule '{rule_id}': " if rule_id else f"rule #{loc[1] + 1} (no id): "
    return ""


def _check_duplicate_ids(doc: LocatedDocument) -> None:
    rules = doc.data.get("rules") if isinstance(doc.data, dict) else None
    if not isinstance(rules, list):
        return  # schema validation reports it
    seen: dict[str, int] = {}
    for index, raw in enumerate(rules):
        rule_id = raw.get("id") if isinstance(raw, dict) else None
        if not isinstance(rule_id, str):
            continue
        if rule_id in seen:
            raise RulewiseError(
                f"duplicate rule id '{rule_id}' (first used by rule #{seen[rule_id] + 1})",
                path=doc.path,
                line=doc.line_of(("rules", index, "id")),
                field=f"rules[{index}].id",
            )
        seen[rule_id] = index


def load_rulebook(path: str | Path | None = None) -> Rulebook:
    """Load a rulebook file; ``None`` or ``"default"`` gives the shipped one."""
    if path is None or str(path) == DEFAULT_RULEBOOK:
        return _load_default()
    path = Path(path)
    if path.suffix.lower() not in {".yaml", ".yml", ".json"}:
        raise RulewiseError("a rulebook must be a .yaml, .yml or .json file", path=path)
    doc = load_document(path)
    _check_duplicate_ids(doc)
    return validate_document(Rulebook, doc, describe=_describe_rule)


@lru_cache(maxsize=1)
def _load_default() -> Rulebook:
    return load_rulebook(default_rulebook_path())
