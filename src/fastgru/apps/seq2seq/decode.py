"""Decoding a trained :class:`~fastgru.apps.seq2seq.model.Seq2Seq`: greedy (batched) and beam search.

Both run the model in eval mode without gradients and stop a sentence at EOS or after
``max_length(source length)`` words. PAD and SOS are never produced (they are not words; an untrained
model would otherwise emit them). Scores are sums of log-probabilities over the remaining tokens; beam
search ranks finished hypotheses by score / length**length_penalty (0 = no length normalisation).

Beam search keeps the `beam` best partial translations of one sentence. At each step it takes the
`beam` best one-word extensions of the live hypotheses; an extension ending in EOS is finished, the rest
stay live, and the live count shrinks by the number finished; it stops when `beam` hypotheses have
finished or none is live. With beam=1 this is exactly greedy decoding: the single best extension of the
single hypothesis, every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fastgru.apps.seq2seq.model import Seq2Seq
from fastgru.apps.seq2seq.vocab import EOS_ID, PAD_ID, SOS_ID


def max_length(source_length: int) -> int:
    """The longest translation produced for a source of that many tokens (EOS included)."""
    return 2 * int(source_length) + 10


def next_word_log_probs(logits: Tensor) -> Tensor:
    """log p(next word) (B, V) with PAD and SOS excluded (probability 0)."""
    logits = logits.clone()
    logits[:, [PAD_ID, SOS_ID]] = float("-inf")
    return torch.log_softmax(logits, dim=-1)


@dataclass
class Decoded:
    """One translation: target ids (without EOS), its log-probability, attention rows (steps, S) or None."""

    ids: list[int]
    score: float
    attention: Tensor | None = None


@torch.no_grad()
def greedy(model: Seq2Seq, src: Tensor, lengths: Tensor) -> list[Decoded]:
    """The most probable next word at every step, for a padded batch of source ids (B, S)."""
    was_training = model.training
    model.eval()
    try:
        lengths = torch.as_tensor(lengths, dtype=torch.int64)
        B = src.shape[0]
        enc = model.encode(src, lengths)
        state = model.decoder.initial_state(enc)
        prev = torch.full((B,), SOS_ID, dtype=torch.int64, device=src.device)
        limits = [max_length(n) for n in lengths.tolist()]
        ids: list[list[int]] = [[] for _ in range(B)]
        scores = [0.0] * B
        attn: list[list[Tensor]] = [[] for _ in range(B)]
        done = [False] * B
        for step in range(max(limits)):
            logits, state, weights = model.decoder.step(prev, state, enc)
            best, choice = next_word_log_probs(logits).max(dim=-1)
            for b in range(B):
                if done[b]:
                    continue
                token = int(choice[b])
                scores[b] += float(best[b])
                if weights is not None:
                    attn[b].append(weights[b, : int(lengths[b])].cpu())
                if token == EOS_ID or step + 1 >= limits[b]:
                    done[b] = True
                if token != EOS_ID:
                    ids[b].append(token)
            if all(done):
                break
            prev = choice
        return [Decoded(ids[b], scores[b], torch.stack(attn[b]) if attn[b] else None) for b in range(B)]
    finally:
        model.train(was_training)


@torch.no_grad()
def beam_search(model: Seq2Seq, src: Tensor, length: int, beam: int = 5, length_penalty: float = 1.0) -> Decoded:
    """The best translation of one source sentence (ids (S,) or (1, S)) found by beam search."""
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    was_training = model.training
    model.eval()
    try:
        src = src.reshape(1, -1)[:, :length]
        enc1 = model.encode(src, torch.tensor([length]))
        state = model.decoder.initial_state(enc1)
        limit = max_length(length)
        live_ids: list[list[int]] = [[]]
        live_attn: list[list[Tensor]] = [[]]
        live_scores = torch.zeros(1, dtype=torch.float64)  # float64: adding a score never ties two words
        prev = torch.full((1,), SOS_ID, dtype=torch.int64)
        finished: list[Decoded] = []
        for step in range(limit):
            n = len(live_ids)
            logits, state, weights = model.decoder.step(prev, state, enc1.repeat(n))
            total = live_scores[:, None] + next_word_log_probs(logits).double()
            width = beam - len(finished)
            top_scores, top_flat = total.reshape(-1).topk(min(width, total.numel()))
            V = total.shape[1]
            keep_rows, keep_tokens, keep_scores = [], [], []
            for score, flat in zip(top_scores.tolist(), top_flat.tolist()):
                if score == float("-inf"):  # PAD / SOS of a tiny vocabulary
                    continue
                row, token = divmod(flat, V)
                attn = live_attn[row] + ([weights[row].cpu()] if weights is not None else [])
                if token == EOS_ID or step + 1 >= limit:
                    ids = live_ids[row] + ([] if token == EOS_ID else [token])
                    finished.append(Decoded(ids, score, torch.stack(attn) if attn else None))
                else:
                    keep_rows.append(row)
                    keep_tokens.append(token)
                    keep_scores.append(score)
            if len(finished) >= beam or not keep_rows:
                break
            rows = torch.tensor(keep_rows)
            live_ids = [live_ids[r] + [t] for r, t in zip(keep_rows, keep_tokens)]
            live_attn = [live_attn[r] + ([weights[r].cpu()] if weights is not None else []) for r in keep_rows]
            live_scores = torch.tensor(keep_scores, dtype=torch.float64)
            state = state.index_select(0, rows)
            prev = torch.tensor(keep_tokens)

        def rank(d: Decoded) -> float:
            return d.score / (len(d.ids) + 1) ** length_penalty  # +1: the EOS is a predicted word too

        return max(finished, key=rank)
    finally:
        model.train(was_training)
