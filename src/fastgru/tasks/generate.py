"""`generate`: a character-level GRU language model — train on a text, report bits per character on
held-out text, and sample new text from a prompt at a chosen temperature.

Training is truncated BPTT over long streams, as char-RNNs do: the training text is cut into `batch_size`
parallel streams, read in chunks of `seq_len` characters with the hidden state carried across chunks.
The text is split in reading order (train, validation, test), so the reported bits per character are on
text the model never saw. Outputs in `out_dir`: model/ (weights + config), vocab.json, history.json,
metrics.json and sample.txt.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch

from .. import atomic
from ..data import char_text
from ..models import SequenceModel, build_model
from ..train import StreamData, TrainConfig, Trainer
from ..train.checkpoints import load_model, save_model
from ._common import check_outputs

OUTPUTS = ("model", "vocab.json", "history.json", "metrics.json", "sample.txt")
EVAL_STREAMS = 4  # parallel streams when scoring held-out text (each starts from a zero state)


def _streams(ids: torch.Tensor, num_streams: int, seq_len: int) -> StreamData:
    """Inputs ids[:-1], targets ids[1:], cut into at most `num_streams` rows of at least seq_len steps."""
    n = max(1, min(num_streams, (ids.numel() - 1) // seq_len))
    return StreamData.from_series(ids[:-1], ids[1:], n)


def train_char_model(
    text: str,
    out_dir: str | Path,
    *,
    seq_len: int = 100,
    hidden_size: int = 128,
    num_layers: int = 1,
    embedding_dim: int = 32,
    epochs: int = 30,
    patience: int | None = 5,
    lr: float = 3e-3,
    batch_size: int = 32,
    valid_frac: float = 0.1,
    test_frac: float = 0.1,
    seed: int = 0,
    progress: bool = False,
) -> tuple[SequenceModel, char_text.CharVocab, dict[str, Any]]:
    """Train a GRU character model on `text`; write model/, vocab.json, history.json, metrics.json.

    Returns (model with its best-validation weights, vocabulary, metrics). Raises ValueError with a
    clear message before training when the text is too short for `seq_len`.
    """
    vocab = char_text.CharVocab.from_text(text)
    train_ids, valid_ids, test_ids = char_text.split_ids(vocab.encode(text), valid_frac, test_frac)
    char_text.check_length({"training": train_ids, "validation": valid_ids, "test": test_ids}, seq_len)
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    model = build_model(cell="gru", vocab_size=len(vocab), embedding_dim=min(embedding_dim, len(vocab)),
                        hidden_size=hidden_size, num_layers=num_layers, head="next_token")
    config = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer="adam", lr=lr, clip_norm=1.0,
                         bptt=seq_len, patience=patience, seed=seed, device="cpu", out_dir=str(out_dir),
                         checkpoint_every=0, progress=progress)
    trainer = Trainer(model, config)
    history = trainer.fit(_streams(train_ids, batch_size, seq_len), _streams(valid_ids, EVAL_STREAMS, seq_len))
    scores = {name: trainer.evaluate(_streams(ids, EVAL_STREAMS, seq_len))["bits_per_token"]
              for name, ids in (("train", train_ids), ("valid", valid_ids), ("test", test_ids))}
    metrics = {
        "bits_per_char": scores,
        "characters": {"train": train_ids.numel(), "valid": valid_ids.numel(), "test": test_ids.numel()},
        "vocabulary_size": len(vocab),
        "parameters": model.num_parameters(),
        "best_epoch": history["best_epoch"],
        "epochs_run": len(history["epochs"]),
        "seconds_per_epoch": [e["train_seconds"] for e in history["epochs"]],
        # a model that knows nothing spreads probability evenly over the vocabulary
        "uniform_bits_per_char": math.log2(len(vocab)),
    }
    (out_dir / "model").mkdir(parents=True, exist_ok=True)
    save_model(model, out_dir / "model")
    atomic.write_json(out_dir / "vocab.json", {"chars": vocab.chars})
    atomic.write_json(out_dir / "metrics.json", metrics)
    return model, vocab, metrics


def load_char_model(folder: str | Path) -> tuple[SequenceModel, char_text.CharVocab]:
    """Load a model written by :func:`train_char_model` (its out_dir)."""
    folder = Path(folder)
    if not (folder / "model" / "model.json").is_file() or not (folder / "vocab.json").is_file():
        raise FileNotFoundError(f"{str(folder)!r} holds no trained character model (model/ and vocab.json)")
    model = load_model(folder / "model")
    vocab = char_text.CharVocab(json.loads((folder / "vocab.json").read_text(encoding="utf-8"))["chars"])
    return model, vocab


@torch.no_grad()
def sample(
    model: SequenceModel,
    vocab: char_text.CharVocab,
    prompt: str,
    length: int = 400,
    *,
    temperature: float = 0.8,
    seed: int = 0,
) -> str:
    """Continue `prompt` by `length` characters drawn from the model (temperature 0 = always the likeliest).

    Lower temperatures give safer, more repetitive text; higher ones more varied and more misspelt text.
    """
    if not prompt:
        raise ValueError("prompt must hold at least one character")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    ids = vocab.encode(prompt)  # names characters the model never saw
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        logits, state = model(ids[None], return_state=True)
        out = []
        for _ in range(length):
            last = logits[0, -1]
            if temperature == 0:
                nxt = int(last.argmax())
            else:
                nxt = int(torch.multinomial(torch.softmax(last.double() / temperature, -1), 1, generator=gen))
            out.append(nxt)
            logits, state = model(torch.tensor([[nxt]]), state=state, return_state=True)
    finally:
        model.train(was_training)
    return prompt + vocab.decode(out)


# -- command line -------------------------------------------------------------------------------------

def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `fastgru generate`."""
    p = subparsers.add_parser("generate", help="character-level GRU language model: train, score, sample",
                              description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text-file", help="a UTF-8 text file to train on")
    src.add_argument("--builtin", default="shakespeare_sonnets", choices=sorted(char_text.BUILTIN_TEXTS),
                     help="a built-in text (default; see fastgru/data/files/README.md)")
    src.add_argument("--load", metavar="DIR", help="sample from a model an earlier run wrote to DIR (no training)")
    p.add_argument("--seq-len", type=int, default=100, help="characters per truncated-BPTT chunk")
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--num-layers", type=int, default=1)
    p.add_argument("--embedding-dim", type=int, default=32)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=5, help="early stopping on validation bits per character")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, default=32, help="parallel training streams")
    p.add_argument("--max-chars", type=int, default=None, help="use only the first N characters of the text")
    p.add_argument("--prompt", default="Shall I compare thee", help="text the sample continues")
    p.add_argument("--length", type=int, default=400, help="characters to sample")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (0 = greedy)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_from_args)
    return p


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Run `fastgru generate` from parsed arguments; prints bits per character and the sample."""
    if args.temperature < 0:
        raise ValueError(f"--temperature must be >= 0, got {args.temperature}")
    out = Path(args.out)
    check_outputs(out, ("sample.txt",) if args.load else OUTPUTS, getattr(args, "force", False))
    if args.load:
        model, vocab = load_char_model(args.load)
        metrics: dict[str, Any] = {}
    else:
        text = char_text.read_text(args.text_file) if args.text_file else char_text.load_builtin_text(args.builtin)
        if args.max_chars is not None:
            text = text[: args.max_chars]
        model, vocab, metrics = train_char_model(
            text, out, seq_len=args.seq_len, hidden_size=args.hidden_size, num_layers=args.num_layers,
            embedding_dim=args.embedding_dim, epochs=args.epochs, patience=args.patience, lr=args.lr,
            batch_size=args.batch_size, seed=args.seed, progress=bool(getattr(args, "progress", False)),
        )
        bpc = metrics["bits_per_char"]
        print(f"{metrics['parameters']:,} parameters, {metrics['epochs_run']} epochs (best {metrics['best_epoch']}); "
              f"bits per character: train {bpc['train']:.3f}, validation {bpc['valid']:.3f}, "
              f"test {bpc['test']:.3f} (uniform guess {metrics['uniform_bits_per_char']:.2f})")
    text = sample(model, vocab, args.prompt, args.length, temperature=args.temperature, seed=args.seed)
    atomic.write_text(out / "sample.txt", text + "\n")
    print(f"--- sample (temperature {args.temperature}) ---\n{text}\n---\nwrote {out}")
    return {"metrics": metrics, "sample": text}
