"""Stage kinds: one module per kind, each a settings model that owns its behaviour (what it
reads, its output, its estimate, how it runs; see ``base.StageKind``).

Adding a kind is one new module and one line in ``STAGE_KINDS`` below (docs/architecture.md).
"""

from __future__ import annotations

from rulewise.pipeline.stages.base import (
    BASE_MODEL,
    DATA_FILE,
    StageContext,
    StageKind,
    parse_reference,
)
from rulewise.pipeline.stages.dpo import DPOStage
from rulewise.pipeline.stages.eval import BenchEntry, EvalStage
from rulewise.pipeline.stages.pairs import PairsStage
from rulewise.pipeline.stages.prompts import PromptsStage
from rulewise.pipeline.stages.report import ReportStage
from rulewise.pipeline.stages.rl import RLStage
from rulewise.pipeline.stages.sft import SFTStage
from rulewise.pipeline.stages.synthesis import SynthesisStage

#: kind name → its class (a class may serve several kinds: its ``kind`` field lists them)
STAGE_KINDS: dict[str, type[StageKind]] = {
    "prompts": PromptsStage,
    "bc": SynthesisStage,
    "context-distill": SynthesisStage,
    "rw": SynthesisStage,
    "srpo": PairsStage,
    "sft": SFTStage,
    "rl": RLStage,
    "dpo": DPOStage,
    "eval": EvalStage,
    "report": ReportStage,
}
Stage = PromptsStage | SynthesisStage | PairsStage | SFTStage | RLStage | DPOStage | EvalStage | ReportStage

__all__ = [
    "BASE_MODEL",
    "DATA_FILE",
    "STAGE_KINDS",
    "BenchEntry",
    "Stage",
    "StageContext",
    "StageKind",
    "parse_reference",
]
