"""The convolutional GRU classifier and its training recipe: padding invariance, the stride that caps the
GRU's steps, augmentation, per-series normalisation (against scipy), validation choice, epoch selection by
validation accuracy and the refit, the members and test views averaged, the top-confusion list."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.stats import zscore

from fastgru.apps.classify import choose_validation, top_confusions
from fastgru.apps.classify_model import ConvGRUClassifier, ConvGRUConfig
from fastgru.apps.classify_training import (
    FitSettings,
    augment,
    fit_classifier,
    normalisation_statistics,
    normalise,
    pad,
    predict_logits,
    predict_proba,
    slice_views,
)
from fastgru.apps.common import confusion_matrix


def _seed() -> int:
    return int(torch.randint(0, 2**31 - 1, (1,)))


@pytest.mark.parametrize("branches,max_length,gru_steps", [("both", 60, 16), ("fcn", 30, 64), ("gru", 45, 8)])
def test_padded_series_get_the_logits_they_get_alone(branches, max_length, gru_steps):
    torch.manual_seed(_seed())
    cfg = ConvGRUConfig(input_size=3, num_classes=4, max_length=max_length, filters=(8, 12), hidden_size=6,
                        gru_steps=gru_steps, branches=branches)
    model = ConvGRUClassifier(cfg)
    model.train()
    model(torch.randn(8, max_length, 3))  # move the BatchNorm running statistics off their start values
    model.eval()
    lengths = torch.randint(1, max_length + 1, (5,))
    lengths[0] = max_length
    x = torch.randn(5, max_length, 3)
    with torch.no_grad():
        batch = model(x, lengths)
        for i, L in enumerate(lengths.tolist()):
            alone = model(x[i : i + 1, :L], torch.tensor([L]))
            torch.testing.assert_close(batch[i : i + 1], alone, rtol=1e-5, atol=1e-5)


def test_the_stride_caps_the_steps_the_gru_reads():
    cfg = ConvGRUConfig(input_size=1, num_classes=2, max_length=1460, gru_steps=128)
    assert cfg.stride == 12 and cfg.stem_kernel == 25
    model = ConvGRUClassifier(cfg)
    lengths = torch.tensor([1460, 1000, 13, 1])
    assert model.stem_lengths(lengths).tolist() == [122, 84, 2, 1]
    z = model.stem(torch.randn(2, 1, 1460))
    assert z.shape[-1] == 122  # ceil(1460 / 12): the GRU reads 122 steps, not 1460
    assert ConvGRUConfig(max_length=100, gru_steps=128).stride == 1


def test_augment_keeps_contiguous_windows_and_zero_padding():
    gen = torch.Generator().manual_seed(_seed())
    x = torch.arange(1, 3 * 20 + 1, dtype=torch.float32).reshape(3, 20, 1)
    lengths = torch.tensor([20, 11, 5])
    x[1, 11:] = 0
    x[2, 5:] = 0
    y, new = augment(x, lengths, 0.7, 0.0, gen)
    assert new.tolist() == [14, 8, 4]  # ceil(0.7 L)
    for i in range(3):
        row = y[i, : new[i], 0]
        start = int(row[0] - x[i, 0, 0])
        torch.testing.assert_close(row, x[i, start : start + new[i], 0])
        assert start + new[i] <= lengths[i] and (y[i, new[i] :] == 0).all()
    y, same = augment(x, lengths, 1.0, 0.1, gen)
    assert same.tolist() == lengths.tolist() and (y[2, 5:] == 0).all()
    noise = (y - x)[0, :, 0]
    assert 0.03 < float(noise.std()) < 0.3


def test_series_normalisation_matches_scipy_zscore():
    rng = np.random.default_rng(_seed())
    xs = [rng.normal(3, 5, size=(int(rng.integers(5, 30)), 2)) for _ in range(4)]
    xs[1][:, 1] = 7.0  # a constant channel becomes zeros
    for got, x in zip(normalise(xs, "series"), xs):
        want = zscore(x, axis=0)
        want[:, np.std(x, axis=0) == 0] = 0.0
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    steps = np.concatenate(xs)
    np.testing.assert_allclose(normalise([xs[0]], "global", reference=xs)[0],
                               (xs[0] - steps.mean(0)) / steps.std(0), rtol=1e-5, atol=1e-5)


def test_validation_is_skipped_when_it_would_eat_scarce_data():
    labels = [str(i % 4) for i in range(40)]  # 10 per class: a 20% part holds 8 series
    tr, va, note = choose_validation(labels, 0.2, 0)
    assert va == [] and len(tr) == 40 and "8 series (< 20)" in note
    tr, va, note = choose_validation([str(i % 2) for i in range(200)], 0.2, 0)
    assert len(va) == 40 and note is None and not set(tr) & set(va)
    tr, va, note = choose_validation(labels, 0.0, 0)
    assert va == [] and "--val-fraction 0" in note


def test_epoch_chosen_by_validation_accuracy_then_refit_for_that_many_epochs():
    torch.manual_seed(_seed())
    n, T = 48, 24
    y = torch.arange(n) % 2
    t = torch.linspace(0, 6.28, T)
    x = torch.stack([torch.sin(t * (1 + int(c))) for c in y])[:, :, None] + 0.3 * torch.randn(n, T, 1)
    lengths = torch.full((n,), T)
    cfg = ConvGRUConfig(input_size=1, num_classes=2, max_length=T, filters=(8, 8), hidden_size=8)
    s = FitSettings(epochs=6, batch_size=8, seed=_seed())
    fit = fit_classifier(lambda: ConvGRUClassifier(cfg), (x[:32], lengths[:32], y[:32]),
                         (x[32:], lengths[32:], y[32:]), s, everything=(x, lengths, y))
    runs = fit.history["epochs"]
    best = max(runs, key=lambda r: (r["val_accuracy"], -r["val_loss"]))
    assert fit.history["best_epoch"] == best["epoch"] and fit.history["refit"]
    assert [r["epoch"] for r in fit.history["refit_epochs"]] == list(range(1, best["epoch"] + 1))
    # the refit follows the same cosine schedule: its learning rates equal the first run's, epoch by epoch
    first_lrs = [r["lr"] for r in runs[: best["epoch"]]]
    assert [r["lr"] for r in fit.history["refit_epochs"]] == pytest.approx(first_lrs)


def test_top_confusions_are_the_largest_off_diagonal_cells():
    rng = np.random.default_rng(_seed())
    true, pred = rng.integers(0, 12, 400), rng.integers(0, 12, 400)
    cm = confusion_matrix(true, pred, 12)
    classes = [f"c{i}" for i in range(12)]
    got = top_confusions(cm, classes, k=5)
    cells = sorted(((cm[i, j], i, j) for i in range(12) for j in range(12) if i != j), reverse=True)
    assert [r["count"] for r in got] == [c for c, _, _ in cells[:5]]
    for r in got:
        i, j = classes.index(r["true"]), classes.index(r["predicted"])
        assert cm[i, j] == r["count"] and r["share_of_true"] == pytest.approx(cm[i, j] / cm[i].sum())


def test_pad_keeps_values_and_lengths():
    rng = np.random.default_rng(_seed())
    xs = [rng.normal(size=(int(rng.integers(1, 9)), 2)).astype(np.float32) for _ in range(5)]
    x, lengths = pad(xs)
    assert lengths.tolist() == [len(v) for v in xs] and x.shape == (5, max(lengths.tolist()), 2)
    for i, v in enumerate(xs):
        np.testing.assert_array_equal(x[i, : len(v)].numpy(), v)
        assert (x[i, len(v) :] == 0).all()


def test_global_statistics_are_the_training_channels_and_saved_ones_reproduce_the_normalisation():
    rng = np.random.default_rng()
    train = [rng.normal(3.0, 2.0, size=(int(rng.integers(5, 30)), 4)) for _ in range(12)]
    new = [rng.normal(3.0, 2.0, size=(9, 4))]
    stats = normalisation_statistics(train, "global")
    steps = np.concatenate(train)
    np.testing.assert_allclose(stats["mean"], steps.mean(0))
    np.testing.assert_allclose(stats["std"], steps.std(0))
    want = (new[0] - np.array(stats["mean"])) / np.array(stats["std"])
    np.testing.assert_allclose(normalise(new, "global", reference=train)[0], want, rtol=1e-5, atol=1e-6)
    assert normalisation_statistics(train, "series") is None and normalisation_statistics(train, "none") is None


def test_slice_views_span_each_series_from_start_to_end():
    torch.manual_seed(_seed())
    lengths = torch.tensor([10, 7, 1])
    x = torch.zeros(3, 10, 2)
    for b, L in enumerate(lengths.tolist()):
        x[b, :L] = torch.randn(L, 2)
    views = slice_views(x, lengths, 0.7, 4)
    assert len(views) == 4
    keep = torch.ceil(lengths * 0.7).long()
    for j, (xv, lv) in enumerate(views):
        assert torch.equal(lv, keep)
        for b, L in enumerate(lengths.tolist()):
            start = int((L - int(keep[b])) * j / 3)
            assert torch.equal(xv[b, : keep[b]], x[b, start : start + keep[b]])
            assert not xv[b, keep[b]:].any()  # padding stays zero
    assert views[0][0][0, 0].equal(x[0, 0]) and views[-1][0][0, keep[0] - 1].equal(x[0, 9])  # first and last step
    assert slice_views(x, lengths, 1.0, 5) == [(x, lengths)] and slice_views(x, lengths, 0.5, 1) == [(x, lengths)]


def test_predict_proba_averages_members_and_views():
    torch.manual_seed(_seed())
    cfg = ConvGRUConfig(input_size=1, num_classes=3, max_length=16, filters=(4, 4), hidden_size=4)
    members = [ConvGRUClassifier(cfg), ConvGRUClassifier(cfg)]
    x, lengths = torch.randn(5, 16, 1), torch.tensor([16, 12, 9, 16, 3])
    x = x * (torch.arange(16)[None, :] < lengths[:, None])[:, :, None]
    got = predict_proba(members, x, lengths, 0.8, 3)
    parts = [predict_logits(m, xv, lv).softmax(-1) for m in members for xv, lv in slice_views(x, lengths, 0.8, 3)]
    torch.testing.assert_close(got, torch.stack(parts).mean(0))
    torch.testing.assert_close(got.sum(-1), torch.ones(5))
    single = predict_proba(members[:1], x, lengths)
    torch.testing.assert_close(single, predict_logits(members[0], x, lengths).softmax(-1))


def test_members_are_validated_run_and_refit_or_extra_seeds():
    torch.manual_seed(_seed())
    n, T = 24, 16
    y = torch.arange(n) % 2
    x = torch.randn(n, T, 1) + y[:, None, None]
    lengths = torch.full((n,), T)
    cfg = ConvGRUConfig(input_size=1, num_classes=2, max_length=T, filters=(4, 4), hidden_size=4)
    s = FitSettings(epochs=3, batch_size=8, seed=_seed(), members=2)
    fit = fit_classifier(lambda: ConvGRUClassifier(cfg), (x[:16], lengths[:16], y[:16]), (x[16:], lengths[16:], y[16:]),
                         s, everything=(x, lengths, y))
    assert fit.history["refit"] and len(fit.members) == 2 and fit.members[0] is fit.model
    assert fit.history["member_epochs"] == []  # the validated run is the second member: no extra training
    fit = fit_classifier(lambda: ConvGRUClassifier(cfg), (x, lengths, y), None, replace(s, members=3))
    assert len(fit.members) == 3 and [len(r) for r in fit.history["member_epochs"]] == [3, 3]
    a, b, c = (torch.cat([p.flatten() for p in m.parameters()]) for m in fit.members)
    assert not torch.equal(a, b) and not torch.equal(b, c)  # other seeds, other networks
    single = fit_classifier(lambda: ConvGRUClassifier(cfg), (x, lengths, y), None, replace(s, members=1))
    assert len(single.members) == 1
