"""Corpus BLEU with sacrebleu (not a hand-written BLEU), against every reference of each source sentence.

Hypotheses and references are compared in the tokenised, lower-cased form of fastgru.apps.seq2seq.vocab
(tokens joined by spaces), so sacrebleu runs with ``tokenize="none"``: the numbers measure the model, not
differences in casing or punctuation spacing, and are not comparable with detokenised WMT scores. A
source sentence with several translations in the data (common in Tatoeba) is scored against all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sacrebleu

from fastgru.apps.seq2seq.vocab import join_tokens, normalize, tokenize


def group_references(sources: Sequence[str], targets: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Distinct sources (by normalised form, first-seen order, first spelling kept) and, for each, its
    distinct tokenised references."""
    order: list[str] = []
    first: dict[str, str] = {}
    refs: dict[str, list[str]] = {}
    for s, t in zip(sources, targets):
        key = normalize(s)
        if key not in refs:
            order.append(key)
            first[key] = s
            refs[key] = []
        ref = join_tokens(tokenize(t))
        if ref not in refs[key]:
            refs[key].append(ref)
    return [first[k] for k in order], [refs[k] for k in order]


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, Any]:
    """sacrebleu corpus BLEU of tokenised hypotheses against a variable number of tokenised references each.

    Returns {"bleu", "precisions", "brevity_penalty", "hyp_len", "ref_len", "signature"}.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if not hypotheses:
        raise ValueError("no sentences to score")
    if any(len(r) == 0 for r in references):
        raise ValueError("every hypothesis needs at least one reference")
    width = max(len(r) for r in references)
    streams = [[r[k] if k < len(r) else None for r in references] for k in range(width)]
    metric = sacrebleu.BLEU(tokenize="none", force=True)  # force: the text is tokenised on purpose
    score = metric.corpus_score(list(hypotheses), streams)
    return {
        "bleu": float(score.score),
        "precisions": [float(p) for p in score.precisions],
        "brevity_penalty": float(score.bp),
        "hyp_len": int(score.sys_len),
        "ref_len": int(score.ref_len),
        "signature": str(metric.get_signature()),
    }
