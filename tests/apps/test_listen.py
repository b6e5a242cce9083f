"""`listen` (keyword spotting on synthetic espeak-ng words): the generator is deterministic, features are
deterministic and match librosa's own mel spectrogram, chunk-by-chunk streaming ends in the full-sequence
state, the held-out voices never reach training, the CLI runs end to end, and bad input fails clearly."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("librosa", reason="the speech extra (librosa, soundfile) is not installed")
import librosa  # noqa: E402
import soundfile  # noqa: E402

from fastgru.apps.cli import main  # noqa: E402
from fastgru.apps.data.windows import Scaler  # noqa: E402
from fastgru.apps.listen import evaluate, feature_settings, listen, predict_files  # noqa: E402
from fastgru.apps.speech.audio import load_wav, scan_folder, speaker_of  # noqa: E402
from fastgru.apps.speech.features import LogMelSettings, LogMelStream, logmel  # noqa: E402
from fastgru.apps.speech.listener import Listener  # noqa: E402
from fastgru.apps.speech.split import split_by_speaker  # noqa: E402
from fastgru.apps.speech.synth import SynthSettings, find_espeak, synthesize_words  # noqa: E402
from fastgru.train.models import build_model  # noqa: E402

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng)")

TINY = dict(words=("yes", "no", "up"), accents=("en-us", "en-gb", "en-029", "en-gb-scotland"),
            variants=("m3", "f3"), speeds=(175,), pitches=(40, 60))


def _rng() -> np.random.Generator:
    return np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))


def _files(folder):
    return sorted(p for p in folder.rglob("*.wav"))


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """3 words x 8 voices x 2 pitches = 48 synthetic clips in a fresh cache."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return synthesize_words(SynthSettings(**TINY), tmp_path_factory.mktemp("speech-cache"))


@pytest.fixture(scope="module")
def trained(tiny_set, tmp_path_factory):
    """A small model trained by the CLI on the tiny set (the run's output folder)."""
    out = tmp_path_factory.mktemp("listen-run")
    cache = tiny_set.parent
    args = ["listen", "--words", ",".join(TINY["words"]), "--accents", ",".join(TINY["accents"]),
            "--variants", ",".join(TINY["variants"]), "--speeds", "175", "--pitches", "40,60",
            "--cache-dir", str(cache), "--out", str(out), "--epochs", "3", "--hidden-size", "12",
            "--seed", str(int(_rng().integers(1000))), "--no-progress"]
    assert main(args) == 0
    return out, args


# -- the generator -------------------------------------------------------------------------------
@needs_espeak
def test_generator_is_deterministic_and_reuses_its_cache(tmp_path):
    rng = _rng()
    settings = SynthSettings(words=tuple(rng.choice(["yes", "stop", "left", "go"], 2, replace=False)),
                             accents=("en-us", "en-gb-scotland"), variants=(str(rng.choice(["f1", "m7"])),),
                             speeds=(int(rng.integers(120, 260)),), pitches=(int(rng.integers(20, 80)),))
    a = synthesize_words(settings, tmp_path / "a", workers=2)
    b = synthesize_words(settings, tmp_path / "b", workers=1)
    assert a.name == b.name  # the folder is named by a hash of the settings and the espeak-ng version
    fa, fb = _files(a), _files(b)
    assert len(fa) == 2 * 2 and [p.relative_to(a) for p in fa] == [p.relative_to(b) for p in fb]
    for x, y in zip(fa, fb):
        assert x.read_bytes() == y.read_bytes()
        assert soundfile.info(str(x)).frames > 1000  # real audio, not an empty header
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["synthetic"] is True and "espeak" in manifest["espeak_ng"].lower()
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {
        str(p.relative_to(a)): hashlib.sha256(p.read_bytes()).hexdigest() for p in fa}
    # a second call reuses the files; a damaged file is made again, with the same bytes
    mtimes = [p.stat().st_mtime_ns for p in fa]
    assert synthesize_words(settings, tmp_path / "a") == a
    assert [p.stat().st_mtime_ns for p in fa] == mtimes
    original = fa[0].read_bytes()
    fa[0].write_bytes(original[:100])
    synthesize_words(settings, tmp_path / "a")
    assert fa[0].read_bytes() == original
    assert not [p for p in a.rglob(".*") if p.is_file()]  # no temporary files left behind


def test_missing_espeak_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no espeak-ng on PATH
    with pytest.raises(FileNotFoundError, match="apt-get install espeak-ng"):
        find_espeak()
    with pytest.raises(FileNotFoundError, match="apt-get install espeak-ng"):
        synthesize_words(SynthSettings(words=("yes", "no")), tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


@needs_espeak
def test_unknown_voices_and_bad_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="variant"):
        synthesize_words(SynthSettings(words=("yes",), variants=("no-such-variant",)), tmp_path)
    with pytest.raises(ValueError, match="no-such-accent"):
        synthesize_words(SynthSettings(words=("yes",), accents=("no-such-accent",)), tmp_path)
    with pytest.raises(ValueError, match="pitch"):
        SynthSettings(pitches=(120,))
    with pytest.raises(ValueError, match="plain words"):
        SynthSettings(words=("-x",))


# -- features ------------------------------------------------------------------------------------
def test_features_are_deterministic_and_match_librosa(tiny_set):
    rng = _rng()
    files = _files(tiny_set)
    path = files[int(rng.integers(len(files)))]
    settings = feature_settings(16000, int(rng.choice([20, 40, 64])))
    a = logmel(load_wav(path, 16000).samples, settings)
    b = logmel(load_wav(path, 16000).samples, settings)
    assert a.dtype == np.float32 and np.array_equal(a, b)
    # an independent route through librosa: its melspectrogram (own framing and filter product)
    y = load_wav(path, 16000).samples.astype(np.float64)
    mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=settings.n_fft, hop_length=settings.hop_length,
                                         center=False, power=2.0, n_mels=settings.n_mels, fmin=settings.fmin)
    oracle = 10 * np.log10(np.maximum(mel, settings.amin)).T
    assert a.shape == oracle.shape == (1 + (len(y) - settings.n_fft) // settings.hop_length, settings.n_mels)
    np.testing.assert_allclose(a, oracle, rtol=1e-5, atol=1e-3)


def test_chunked_features_equal_whole_signal_features():
    rng = _rng()
    settings = LogMelSettings(n_mels=int(rng.integers(8, 48)))
    y = (rng.standard_normal(int(rng.integers(300, 20000))) * rng.uniform(0.01, 1)).astype(np.float32)
    stream = LogMelStream(settings)
    parts, i = [], 0
    while i < len(y):
        n = int(rng.integers(1, 1500))
        parts.append(stream.push(y[i:i + n]))
        i += n
    whole = logmel(y, settings)
    assert len(whole) == settings.num_frames(len(y)) == stream.frames_out
    assert np.array_equal(np.concatenate(parts), whole)


# -- streaming classifier ------------------------------------------------------------------------
@pytest.mark.parametrize("num_layers", [1, 2])
def test_streaming_final_state_equals_full_sequence(tiny_set, num_layers):
    rng = _rng()
    settings = feature_settings()
    files = _files(tiny_set)
    samples = load_wav(files[int(rng.integers(len(files)))], 16000).samples
    frames = logmel(samples, settings)
    model = build_model(input_size=settings.n_mels, hidden_size=int(rng.integers(4, 40)), num_layers=num_layers,
                        output_size=3, head="classification")
    listener = Listener(model, ["a", "b", "c"], settings, Scaler.fit(frames + rng.standard_normal(frames.shape)))
    x = torch.from_numpy(listener.normalize(frames))[None]
    with torch.no_grad():
        logits, h_full = model(x, return_state=True)
        oracle = torch.nn.GRU(settings.n_mels, model.config.hidden_size, num_layers, batch_first=True)
        oracle.load_state_dict(model.rnn.state_dict())
        _, h_torch = oracle(x)
    stream = listener.stream()
    i = 0
    while i < len(samples):
        n = int(rng.integers(50, 4000))
        probs = stream.push(samples[i:i + n])
        i += n
    assert stream.frames == len(frames)
    torch.testing.assert_close(stream.state, h_full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stream.state, h_torch, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(probs, logits.softmax(-1)[0].numpy(), rtol=1e-5, atol=1e-6)
    stream.reset()
    assert stream.state is None and stream.push(samples[:100]) is None  # shorter than one window


# -- held-out voices -----------------------------------------------------------------------------
@pytest.mark.parametrize("group", ["voice", "accent", "variant"])
def test_speaker_split_holds_out_whole_groups(group):
    rng = _rng()
    accents, variants = [f"acc{i}" for i in range(rng.integers(3, 7))], [f"v{i}" for i in range(rng.integers(3, 6))]
    speakers = [f"{rng.choice(accents)}+{rng.choice(variants)}" for _ in range(300)]
    s = split_by_speaker(speakers, test_fraction=0.3, val_fraction=0.25, seed=int(rng.integers(1000)), group=group)
    assert sorted(s.train + s.val + s.test) == list(range(300))
    key = {"voice": lambda v: v, "accent": lambda v: v.split("+")[0], "variant": lambda v: v.split("+")[1]}[group]
    parts = [{key(speakers[i]) for i in idx} for idx in (s.train, s.val, s.test)]
    assert all(parts) and not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert parts == [set(s.train_groups), set(s.val_groups), set(s.test_groups)]


def test_speaker_split_needs_three_speakers():
    with pytest.raises(ValueError, match="at least 3"):
        split_by_speaker(["a", "a", "b"])


# -- the command, end to end ---------------------------------------------------------------------
def test_cli_trains_reports_and_saves(trained, capsys):
    out, args = trained
    m = json.loads((out / "metrics.json").read_text())
    assert m["synthetic"] is True and "espeak-ng" in m["note"] and "not recorded" in m["note"]
    assert m["classes"] == sorted(TINY["words"]) and m["clips"] == 3 * 8 * 2
    groups = m["groups"]
    assert not set(groups["test"]) & set(groups["train"]) and not set(groups["val"]) & set(groups["train"])
    assert len(groups["train"]) + len(groups["val"]) + len(groups["test"]) == 8

    pred = pd.read_csv(out / "predictions.csv")
    assert len(pred) == m["test_clips"] and set(pred["speaker"]) == set(groups["test"])
    assert set(pred["speaker"]).isdisjoint(groups["train"])
    acc = m["metrics"][m["model"]]["accuracy"]
    assert (pred["true"] == pred["predicted"]).mean() == pytest.approx(acc)
    probs = pred[[f"p_{c}" for c in m["classes"]]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    cm = pd.read_csv(out / "confusion.csv")
    assert cm.drop(columns="true").to_numpy().tolist() == m["confusion"]
    assert np.trace(np.array(m["confusion"])) == (pred["true"] == pred["predicted"]).sum()
    base = next(v for k, v in m["metrics"].items() if k.startswith("majority"))
    assert base["accuracy"] == pytest.approx(1 / 3)  # balanced words: every word is 1/3 of the test clips
    assert matplotlib.image.imread(str(out / "confusion.png")).ndim == 3
    assert json.loads((out / "history.json").read_text())["epochs"]

    meta = json.loads((out / "model" / "listener.json").read_text())
    assert meta["classes"] == m["classes"] and meta["features"]["n_mels"] == 40
    assert len(meta["normalization"]["mean"]) == 40
    listener = Listener.load(out / "model")
    assert listener.info["train_groups"] == groups["train"]

    # one held-out clip per word, byte-identical to its source, never a training voice
    examples = sorted((out / "examples").iterdir())
    assert [p.name for p in examples] == [f"{w}.wav" for w in m["classes"]]
    assert set(m["examples"]) == set(m["classes"])
    for word, source in m["examples"].items():
        assert (out / "examples" / f"{word}.wav").read_bytes() == Path(source).read_bytes()
        assert speaker_of(source) in groups["test"]

    capsys.readouterr()
    assert main(args) == 2  # no --force: the earlier run's files stay
    assert "--force" in capsys.readouterr().err


def test_cli_classifies_a_wav_whole_and_streamed(trained, tiny_set, capsys):
    out, _ = trained
    pred = pd.read_csv(out / "predictions.csv")
    row = pred.iloc[int(_rng().integers(len(pred)))]
    wav = tiny_set / row["file"]
    capsys.readouterr()
    assert main(["listen", "--model", str(out / "model"), str(wav)]) == 0
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if ln.startswith(str(wav)))
    assert line.split()[1] == row["predicted"] and "resampled from 22050 Hz" in text
    whole = predict_files(out / "model", [wav])[0]
    streamed = predict_files(out / "model", [wav], stream=True, chunk_ms=float(_rng().uniform(5, 80)))[0]
    assert whole["predicted"] == streamed["predicted"] == row["predicted"]
    for c in whole["probabilities"]:
        assert streamed["probabilities"][c] == pytest.approx(whole["probabilities"][c], abs=1e-5)
        assert whole["probabilities"][c] == pytest.approx(row[f"p_{c}"], abs=1e-5)
    assert 0 < streamed["settled_s"] <= len(load_wav(wav, 16000).samples) / 16000 + 1e-9
    assert main(["listen", "--model", str(out / "model"), "--stream", str(wav)]) == 0
    assert "settled at" in capsys.readouterr().out


def test_user_folder_and_evaluation(trained, tiny_set, tmp_path):
    """A user's folder (16 kHz, some files stereo, speaker_n.wav names) scored with the saved model."""
    out, _ = trained
    rng = _rng()
    user = tmp_path / "recordings"
    sources = _files(tiny_set)
    chosen = [sources[i] for i in rng.choice(len(sources), 12, replace=False)]
    for k, src in enumerate(chosen):
        y = load_wav(src, 16000).samples
        data = np.stack([y, 0.5 * y], axis=1) if k % 3 == 0 else y
        (user / src.parent.name).mkdir(parents=True, exist_ok=True)
        soundfile.write(str(user / src.parent.name / f"spk{k % 4}_{k}.wav"), data, 16000, subtype="FLOAT")
    clips = scan_folder(user, min_classes=1)
    assert {c.speaker for c in clips} <= {f"spk{i}" for i in range(4)} and speaker_of("ab_nohash_1.wav") == "ab"
    stereo = next(p for p in _files(user) if soundfile.info(str(p)).channels == 2)
    a = load_wav(stereo, 16000)
    assert a.mixed and np.allclose(a.samples, soundfile.read(str(stereo))[0].mean(1), atol=1e-7)
    r = evaluate(out / "model", user, out_dir=tmp_path / "eval")
    assert r["clips"] == 12 and r["audio"]["mixed_to_mono_files"] == 4 and r["audio"]["resampled_files"] == 0
    pred = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert (pred["true"] == pred["predicted"]).mean() == pytest.approx(r["metrics"]["saved model"]["accuracy"])


# -- bad input -----------------------------------------------------------------------------------
def _write(path, rate, seconds=0.5, channels=1):
    t = np.arange(int(rate * seconds)) / rate
    y = 0.3 * np.sin(2 * np.pi * 440 * t)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.stack([y] * channels, 1) if channels > 1 else y, rate)
    return path


def test_sample_rates_resampled_down_or_refused(tmp_path):
    low = _write(tmp_path / "low.wav", 8000)
    with pytest.raises(ValueError, match=r"low\.wav.*8000 Hz is below the model's 16000 Hz"):
        load_wav(low, 16000)
    high = _write(tmp_path / "high.wav", 44100)
    with pytest.raises(ValueError, match=r"high\.wav.*44100 Hz, the model expects 16000"):
        load_wav(high, 16000, resample=False)
    a = load_wav(high, 16000)
    assert a.resampled and a.source_rate == 44100 and len(a.samples) == pytest.approx(8000, abs=2)
    spectrum = np.abs(np.fft.rfft(a.samples))
    assert abs(np.argmax(spectrum) * 16000 / len(a.samples) - 440) < 5  # the tone survives resampling
    with pytest.raises(FileNotFoundError, match="nothere.wav"):
        load_wav(tmp_path / "nothere.wav", 16000)
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match=r"junk\.wav.*cannot read"):
        load_wav(tmp_path / "junk.wav", 16000)


def test_bad_folders_and_unknown_words(trained, tmp_path, capsys):
    out, _ = trained
    one = tmp_path / "one"
    _write(one / "yes" / "a_1.wav", 16000)
    _write(one / "yes" / "b_1.wav", 16000)
    with pytest.raises(ValueError, match="only one class"):
        listen(one, out_dir=tmp_path / "o1")
    assert main(["listen", "--data", str(one), "--out", str(tmp_path / "o2"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "only one class" in err and len(err.splitlines()) == 1
    with pytest.raises(ValueError, match="no WAV files in sub-folders"):
        scan_folder(tmp_path / "one" / "yes")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        scan_folder(tmp_path / "missing")

    unknown = tmp_path / "unknown"
    _write(unknown / "yes" / "a_1.wav", 16000)
    _write(unknown / "banana" / "a_2.wav", 16000)
    with pytest.raises(ValueError, match=r"\['banana'\].*not among the model's classes"):
        evaluate(out / "model", unknown, out_dir=tmp_path / "o3")
    assert not (tmp_path / "o3").exists()  # refused before writing anything

    low = _write(tmp_path / "phone.wav", 8000)
    assert main(["listen", "--model", str(out / "model"), str(low)]) == 2
    err = capsys.readouterr().err.strip()
    assert "phone.wav" in err and "below the model's 16000 Hz" in err and len(err.splitlines()) == 1
    short = _write(tmp_path / "click.wav", 16000, seconds=0.01)
    with pytest.raises(ValueError, match=r"click\.wav.*shorter than one"):
        predict_files(out / "model", [short])
    assert main(["listen", str(short)]) == 2
    assert "needs --model" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a model folder"):
        Listener.load(tmp_path)
