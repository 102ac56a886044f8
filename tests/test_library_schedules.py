"""The schedules of algobench.schedules: phases, shapes, the refined schedule against the authors'
mapping, the gradient-norm file format and the batch-size rescaling rules."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from algobench import schedules as S
from algobench.errors import UserError


def test_warmup_linear_and_constant_phases():
    lr = [S.warmup_linear(s, peak_lr=2.0, warmup_steps=4, decay_steps=10, final_lr_frac=0.1) for s in range(20)]
    assert lr[0] == pytest.approx(0.5) and lr[3] == pytest.approx(2.0) and lr[4] == pytest.approx(2.0)
    assert lr[9] == pytest.approx(2.0 + (0.2 - 2.0) * 0.5)  # half way down, linearly
    assert lr[14] == pytest.approx(0.2) and lr[19] == pytest.approx(0.2)
    flat = [S.warmup_constant(s, peak_lr=2.0, warmup_steps=4) for s in range(10)]
    assert flat[:4] == pytest.approx([0.5, 1.0, 1.5, 2.0]) and flat[4:] == [2.0] * 6


@pytest.mark.parametrize("decay,fn", [("cosine", S.warmup_cosine), ("linear", S.warmup_linear)])
def test_warmup_decay_dispatches_on_the_decay_shape(decay, fn):
    for s in range(30):
        assert S.warmup_decay(s, peak_lr=1.0, warmup_steps=3, decay_steps=20, decay=decay) == \
            fn(s, peak_lr=1.0, warmup_steps=3, decay_steps=20)
    assert S.warmup_decay(25, peak_lr=1.0, warmup_steps=3, decay_steps=20, decay="none") == 1.0
    with pytest.raises(UserError, match="did you mean: cosine"):
        S.warmup_decay(0, peak_lr=1.0, warmup_steps=3, decay_steps=20, decay="cosin")


@pytest.mark.parametrize("shape,midpoint", [("linear", 0.55), ("cosine", 0.55), ("sqrt", 1 - 0.9 * math.sqrt(0.5))])
def test_wsd_warms_up_holds_then_cools_down(shape, midpoint):
    lr = [S.warmup_stable_decay(s, peak_lr=1.0, warmup_steps=2, stable_steps=5, decay_steps=10, decay=shape,
                                final_lr_frac=0.1) for s in range(25)]
    assert lr[:2] == pytest.approx([0.5, 1.0]) and lr[2:7] == [1.0] * 5
    assert lr[12] == pytest.approx(midpoint)
    assert lr[17] == pytest.approx(0.1) and lr[24] == pytest.approx(0.1)
    assert all(a >= b - 1e-12 for a, b in zip(lr[7:], lr[8:]))


def test_inverse_sqrt_peaks_after_warmup_then_halves_at_four_times():
    lr = [S.inverse_sqrt(s, peak_lr=1.0, warmup_steps=10) for s in range(40)]
    assert max(lr) == lr[9] == 1.0 and lr[0] == pytest.approx(0.1)
    assert lr[39] == pytest.approx(0.5)  # sqrt(10 / 40)
    assert S.constant(123, lr=0.3) == 0.3


def test_rescale_lr_rules():
    assert S.rescale_lr(1e-3, from_batch_size=64, to_batch_size=256) == pytest.approx(2e-3)
    assert S.rescale_lr(0.1, from_batch_size=256, to_batch_size=64, rule="linear") == pytest.approx(0.025)
    with pytest.raises(UserError, match="did you mean"):
        S.rescale_lr(0.1, from_batch_size=1, to_batch_size=2, rule="quadratic")
    with pytest.raises(UserError, match="positive"):
        S.rescale_lr(0.1, from_batch_size=0, to_batch_size=2)


def official_closed_form(G: np.ndarray) -> np.ndarray:
    """The authors' find_closed_form_schedule (facebookresearch), then normalised to its max."""
    T = len(G)
    weights = G**-2.0
    tail_sums = np.flip(np.cumsum(np.flip(weights)))
    sched = np.array([0.0 if t == T - 1 else weights[t] * tail_sums[t + 1] / tail_sums[-1] for t in range(T)])
    return sched / sched.max()


def test_refined_profile_of_constant_norms_is_linear_decay():
    """With equal gradient norms the refinement gives the worst-case optimal linear decay."""
    profile = S.refine_profile(np.full(11, 3.0), tau=0.2)
    np.testing.assert_allclose(profile, np.linspace(1.0, 0.0, 11), atol=1e-12)


def test_refined_profile_matches_the_authors_mapping_and_warms_up():
    rng = np.random.default_rng(0)
    t = np.arange(300)
    norms = 4 * np.exp(-t / 30) + 1 + 0.1 * rng.random(300)  # large early gradients
    np.testing.assert_allclose(S.refine_profile(norms, tau=0.0), official_closed_form(norms), rtol=1e-12)
    smooth = S.refine_profile(norms, tau=0.1)
    assert smooth[0] < 0.2 and np.argmax(smooth) > 30 and smooth[-1] == 0.0  # warmup, then anneal to 0
    l1 = S.refine_profile(norms, tau=0.0, norm="l1")
    weights = norms**-1.0
    want = weights * np.array([weights[i + 1:].sum() for i in range(300)])
    np.testing.assert_allclose(l1, want / want.max(), rtol=1e-12)


def test_median_smoothing_is_the_authors_scipy_recipe():
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(1)
    for n, tau in [(2, 1.0), (50, 0.1), (333, 0.05), (100, 0.3)]:
        g = rng.random(n)
        width = 2 * (int(tau * n) // 2) + 1
        want = scipy_ndimage.median_filter(np.pad(g, (0, 2 * width), mode="reflect"), size=width,
                                           mode="nearest")[: n]
        np.testing.assert_allclose(S.median_smooth(g, tau=tau), want)


def test_refined_stretches_the_profile_onto_the_run():
    profile = np.array([0.2, 1.0, 0.5, 0.0])
    lr = [S.refined(s, peak_lr=2.0, profile=profile, total_steps=7) for s in range(8)]
    assert lr[0] == pytest.approx(0.4) and lr[2] == pytest.approx(2.0) and lr[3] == pytest.approx(1.5)
    assert lr[6] == 0.0 and lr[7] == 0.0


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_grad_norm_file_with_sparse_steps_is_interpolated(tmp_path, suffix):
    frame = pd.DataFrame({"step": [0, 10, 20], "grad_norm": [3.0, 1.0, 2.0], "train_loss": [5.0, 4.0, 3.0]})
    path = tmp_path / f"norms{suffix}"
    frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
    norms = S.load_grad_norms(path)
    assert len(norms) == 21 and norms[5] == pytest.approx(2.0) and norms[15] == pytest.approx(1.5)
    lr_at = S.refined_from_file(path, peak_lr=1.0, total_steps=21, tau=0.0)
    np.testing.assert_allclose([lr_at(s) for s in range(21)], S.refine_profile(norms, tau=0.0))
    with pytest.raises(UserError, match="grad_norm_l1"):
        S.refined_from_file(path, peak_lr=1.0, total_steps=21, norm="l1")


@pytest.mark.parametrize("frame,message", [
    (pd.DataFrame({"step": [0, 1], "norm": [1.0, 1.0]}), "no column grad_norm"),
    (pd.DataFrame({"step": [0, 0, 1], "grad_norm": [1.0, 1.0, 1.0]}), "increasing"),
    (pd.DataFrame({"step": [0, 1], "grad_norm": [1.0, 0.0]}), "positive"),
])
def test_bad_grad_norm_files_are_user_errors(tmp_path, frame, message):
    path = tmp_path / "norms.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(UserError, match=message):
        S.load_grad_norms(path)
    with pytest.raises(UserError, match="not found"):
        S.load_grad_norms(tmp_path / "missing.csv")


def test_every_named_schedule_spans_the_run():
    for name in S.NAMES:
        if name == "refined":
            with pytest.raises(UserError, match="--grad-norms"):
                S.named(name, steps=100)
            continue
        lr = [S.named(name, steps=100, peak_lr=0.5)(s) for s in range(100)]
        assert max(lr) == pytest.approx(0.5) and min(lr) >= 0
    with pytest.raises(UserError, match="warmup_cosine"):
        S.named("cosine", steps=100)


def _old_warmup_cosine(*, step, step_hint, hparams, warmup_key="warmup_frac"):
    """The body the submissions repeated before SCHEDULES."""
    warmup = max(int(getattr(hparams, warmup_key) * step_hint), 1)
    return S.warmup_cosine(step, peak_lr=hparams.learning_rate, warmup_steps=warmup, decay_steps=step_hint - warmup)


def test_schedules_registry_gives_the_submissions_former_schedules():
    from types import SimpleNamespace
    hp = SimpleNamespace(learning_rate=3e-3, warmup_frac=0.05, warmup_factor=0.02, decay_steps_factor=0.9,
                         end_factor=0.01)
    cosine = S.lr_schedule("warmup_cosine", warmup="warmup_frac")
    algoperf = S.lr_schedule("warmup_linear", warmup="warmup_factor", decay_frac="decay_steps_factor",
                             final_lr_frac="end_factor")
    for step_hint in (7, 100, 1000):
        for step in range(step_hint + 5):
            assert cosine(step=step, step_hint=step_hint, hparams=hp) == \
                _old_warmup_cosine(step=step, step_hint=step_hint, hparams=hp)
            w = max(int(hp.warmup_factor * step_hint), 1)
            assert algoperf(step=step, step_hint=step_hint, hparams=hp) == S.warmup_linear(
                step, peak_lr=hp.learning_rate, warmup_steps=w, decay_steps=int(0.9 * (step_hint - w)),
                final_lr_frac=0.01)
    assert S.lr_schedule("constant", peak=0.5)(step=3, step_hint=10, hparams=hp) == 0.5
    assert S.lr_schedule("warmup_constant", warmup=0.1)(step=50, step_hint=100, hparams=hp) == hp.learning_rate


def test_unknown_schedule_fails_fast_with_the_closest_names():
    with pytest.raises(UserError, match="warmup_cosine"):
        S.lr_schedule("warmup_cosin")
    assert set(S.SCHEDULES) >= {"warmup_cosine", "warmup_linear", "warmup_constant", "constant"}
