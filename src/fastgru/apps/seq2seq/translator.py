"""A trained translation model with its two vocabularies: translate sentences, save and load a folder.

Folder layout (every file written atomically; no pickle):

    model.safetensors   weights, checksummed, the model config in its header (fastgru.io.checkpoint.write)
    config.json         the same config for people, plus the languages and the data it was trained on
    vocab.json          {"source": ..., "target": ...}: the two vocabularies (fastgru.apps.data.words.WordVocab)

``Translator.load`` rebuilds the model from the header's config and checks that the vocabularies fit it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fastgru.apps.data.words import WordVocab
from fastgru.apps.seq2seq.decode import Decoded, beam_search, greedy
from fastgru.apps.seq2seq.model import Seq2Seq, Seq2SeqConfig
from fastgru.apps.seq2seq.pairs import encode_sources
from fastgru.apps.seq2seq.vocab import join_tokens, tokenize, vocab_from_dict
from fastgru.io import atomic, checkpoint

FORMAT = "fastgru-translator-v1"
FILES = ("model.safetensors", "config.json", "vocab.json")


@dataclass
class Translator:
    """model + source/target vocabularies; `info` holds languages and provenance (saved in config.json)."""

    model: Seq2Seq
    source_vocab: WordVocab
    target_vocab: WordVocab
    info: dict[str, Any] = field(default_factory=dict)

    def decode(self, sentences: list[str], beam: int = 1, length_penalty: float = 1.0) -> list[Decoded]:
        """Translations (ids, score, attention) of raw sentences: greedy for beam=1, else beam search."""
        if isinstance(sentences, str):
            sentences = [sentences]
        if not sentences:
            return []
        empty = [i for i, s in enumerate(sentences) if not tokenize(s)]
        if empty:
            raise ValueError(f"sentence {empty[0] + 1} has no words to translate: {sentences[empty[0]]!r}")
        src, lengths = encode_sources(list(sentences), self.source_vocab)
        if beam == 1:
            return greedy(self.model, src, lengths)
        return [beam_search(self.model, src[i], int(lengths[i]), beam, length_penalty) for i in range(len(src))]

    def translate(self, sentences: list[str] | str, beam: int = 1, length_penalty: float = 1.0) -> list[str]:
        """Tokenised, lower-cased translations, one string per sentence."""
        return [join_tokens(self.target_vocab.decode(d.ids)) for d in self.decode(sentences, beam, length_penalty)]

    def save(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise FileExistsError(f"{folder} is a file, not a folder")
        if not overwrite:
            clash = [n for n in FILES if (folder / n).exists()]
            if clash:
                raise FileExistsError(f"{folder} already holds {', '.join(clash)}; pass overwrite=True to replace")
        folder.mkdir(parents=True, exist_ok=True)
        config = {"format": FORMAT, "model": self.model.config.to_dict(), **self.info}
        weights = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        checkpoint.write(folder / "model.safetensors", weights, {"translator": config}, overwrite=True)
        atomic.write_json(folder / "vocab.json", {"source": self.source_vocab.to_dict(),
                                                  "target": self.target_vocab.to_dict()})
        atomic.write_json(folder / "config.json", config)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Translator:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"translation model folder not found: {folder}")
        missing = [n for n in ("model.safetensors", "vocab.json") if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} is not a saved translation model: {', '.join(missing)} missing "
                                    "(train one with `fastgru translate`; the model folders are model-*)")
        weights, header = checkpoint.read(folder / "model.safetensors")
        config = header.get("translator") if isinstance(header, dict) else None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise ValueError(f"{folder / 'model.safetensors'} is not a fastgru translation model")
        try:
            vocabs = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
            source = vocab_from_dict(vocabs["source"], "source vocabulary")
            target = vocab_from_dict(vocabs["target"], "target vocabulary")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{folder / 'vocab.json'}: not the vocabularies of a translation model ({exc})") from exc
        cfg = Seq2SeqConfig.from_dict(config["model"])
        if (len(source), len(target)) != (cfg.src_vocab_size, cfg.tgt_vocab_size):
            raise ValueError(f"{folder}: vocab.json has {len(source)} source / {len(target)} target tokens but the "
                             f"model was built for {cfg.src_vocab_size} / {cfg.tgt_vocab_size}")
        model = Seq2Seq(cfg)
        with torch.no_grad():
            model.load_state_dict(weights)
        model.eval()
        info = {k: v for k, v in config.items() if k not in ("format", "model")}
        return cls(model, source, target, info)
