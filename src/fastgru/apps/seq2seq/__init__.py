"""Sequence-to-sequence translation with GRUs: the RNN encoder-decoder of Cho et al. (2014) and its
additive-attention form (Bahdanau, Cho, Bengio 2015), trained with scheduled teacher forcing and decoded
greedily or by beam search. `fastgru translate` (fastgru.apps.translate) is the command around it.

Modules, one job each:

- vocab:      normalisation, tokenisation, the translation settings of fastgru.apps.data.words.WordVocab
- pairs:      sentence-pair files (shipped Tatoeba eng-fra or a user's TSV), checks, split, padding
- model:      Seq2SeqConfig, encoder (fastgru.nn.GRU with ``lengths=``), attention, decoder, Seq2Seq
- training:   the per-token loss, the teacher-forcing schedule, Seq2SeqTrainer (fastgru's Trainer)
- decode:     greedy and beam-search decoding
- translator: model + vocabularies: translate sentences, save / load a folder
- bleu:       sacrebleu corpus BLEU against all references of each source sentence
- heatmap:    the attention heat-map of one sentence
"""

from fastgru.apps.seq2seq.bleu import corpus_bleu, group_references
from fastgru.apps.seq2seq.decode import Decoded, beam_search, greedy
from fastgru.apps.seq2seq.model import Seq2Seq, Seq2SeqConfig
from fastgru.apps.seq2seq.pairs import SentencePairs, load_pairs, read_pairs, split_by_source
from fastgru.apps.seq2seq.training import Seq2SeqTrainer, sequence_loss, teacher_forcing_ratio, train_translator
from fastgru.apps.seq2seq.translator import Translator
from fastgru.apps.seq2seq.vocab import build_vocab, normalize, tokenize, vocab_from_dict

__all__ = ["Decoded", "Seq2Seq", "Seq2SeqConfig", "Seq2SeqTrainer", "SentencePairs", "Translator", "beam_search",
           "build_vocab", "corpus_bleu", "greedy", "group_references", "load_pairs", "normalize", "read_pairs",
           "sequence_loss", "split_by_source", "teacher_forcing_ratio", "tokenize", "train_translator",
           "vocab_from_dict"]
