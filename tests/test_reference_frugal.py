"""FRUGAL (submissions/frugal.py `Frugal`) against its authors' `BlockAdamW` and `GaloreAdamW`,
transcribed in tests/references/frugal.py: float64, 100 steps at a constant lr, a rotation every 10
steps (10 subspaces), hidden matrices of four shapes (tall, wide and square: both SVD sides), a conv
filter (a block in "block", AdamW in "svd": the authors project only nn.Linear weights), a bias
with gradients missing at some steps in a group of its own and a scalar in the AdamW groups, weight
decay on the matrices and the scalar, the state-free lr scale at 0.1 (the submission's default)
and 1.0 (the authors').

The authors draw the "random" block order from torch's global generator; the comparison reseeds it
before each rotation with the seed the submission's own generator takes for that rotation,
(seed * 1_000_003 + rotation), so both draw the same blocks. The authors compute the SVD in float32
for any other dtype; the reference's `svd_dtype` is float64 here (see tests/references/frugal.py).
"""

from __future__ import annotations

import pytest
import torch

from algobench import submission as submission_lib
from tests.references import frugal as F
from tests.references import harness as H

SHAPES = {"tall": (7, 4), "wide": (4, 7), "square": (5, 5), "thin": (6, 3), "conv": (4, 3, 3, 3), "bias": (5,),
          "scalar": ()}
INIT = H.initial(SHAPES)
STEPS, GAP, LR = 100, 10, 1e-2
BIAS_SOMETIMES_NONE = H.with_none(H.noisy_gradient, lambda step, index: index == 5 and step % 7 in (2, 3))
TOL = 1e-12
ADAM = {"betas": (0.9, 0.999), "eps": 1e-8}


def spec_for(projection: str) -> list[tuple[list[int], dict]]:
    matrices, adamw = ([0, 1, 2, 3, 4], [6]) if projection == "block" else ([0, 1, 2, 3], [4, 6])
    return [(matrices, {"use_matrix": True, "weight_decay": 0.1}),
            (adamw, {"use_matrix": False, "weight_decay": 0.1}),
            ([5], {"use_matrix": False, "weight_decay": 0.0})]


def ours(*, projection, order="descending", density=0.4, gap=GAP, free_scale=0.1, seed=0):
    Frugal = submission_lib.load("frugal").module.Frugal
    return lambda groups: Frugal(groups, lr=LR, density=density, update_gap=gap, projection=projection,
                                 block_order=order, state_free_lr_scale=free_scale, seed=seed, **ADAM)


def authors(*, projection, order="descending", density=0.4, gap=GAP, free_scale=0.1, svd_dtype=torch.float64):
    """`BlockAdamW` / `GaloreAdamW` on the same groups (use_matrix -> is_proj_params)."""
    def make(groups):
        groups = [{"is_proj_params": g.pop("use_matrix"), **g} for g in groups]
        kw = {"lr": LR, "update_gap": gap, "density": density, "inactive_update_rule": "sign_sgd",
              "inactive_lr_scale": free_scale, "proj_params_lr_scale": 1.0, "reset_statistics": True, **ADAM}
        if projection == "block":
            return F.BlockAdamW(groups, block_order=order, **kw)
        return F.GaloreAdamW(groups, svd_dtype=svd_dtype, **kw)
    return make


def same_random_draws(seed: int):
    """Before each rotation, torch's global generator takes the submission's seed for it."""
    def before_step(optimizer, step):
        if step % GAP == 0:
            torch.manual_seed(seed * 1_000_003 + step // GAP)
    return before_step


def compare(ours_make, authors_make, projection, before_step=None) -> float:
    with torch.random.fork_rng():
        return H.compare(ours_make, authors_make, spec_for(projection), BIAS_SOMETIMES_NONE, steps=STEPS, init=INIT,
                         before_step=before_step)


CASES = [("block", "descending", 0.4), ("block", "ascending", 0.4), ("block", "random", 0.4), ("svd", None, 0.5)]


def settings(projection: str, order: str | None, density: float, **extra) -> dict:
    """Keyword arguments of `ours` and `authors` (the block order is not an option of "svd")."""
    return {"projection": projection, "density": density, **({"order": order} if order else {}), **extra}


@pytest.mark.parametrize("free_scale", [0.1, 1.0])
@pytest.mark.parametrize("projection,order,density", CASES)
def test_frugal_equals_the_authors_frugal_adamw(projection, order, density, free_scale):
    kw = settings(projection, order, density, free_scale=free_scale)
    error = compare(ours(**kw), authors(**kw), projection, same_random_draws(0) if order == "random" else None)
    assert error <= TOL, f"relative error {error:.3e}"


# --- the stream exercises what is compared --------------------------------------------------------

@pytest.mark.parametrize("projection,order,density", CASES[:1] + CASES[-1:])
def test_rotations_and_the_state_free_part_are_in_the_run(projection, order, density):
    """No rotation after the first (gap beyond the run), or no signSGD part, changes the result."""
    kw = settings(projection, order, density)
    assert compare(authors(**kw, gap=1000), authors(**kw), projection) > 1e-3
    assert compare(authors(**kw, free_scale=0.0), authors(**kw), projection) > 1e-3


def test_random_order_depends_on_the_seed_and_is_not_descending():
    assert compare(ours(projection="block", order="random", seed=1), ours(projection="block", order="random"),
                   "block") > 1e-3
    assert compare(authors(projection="block", order="random"), authors(projection="block", order="descending"),
                   "block", same_random_draws(0)) > 1e-3


def test_the_authors_float32_svd_differs_only_at_float32_precision():
    """The authors' SVD in float32 of float64 gradients (their `.float()`): the run stays within
    float32-level distance of the float64 one, and the reference's float64 setting matters."""
    kw = {"projection": "svd", "density": 0.5}
    error = compare(authors(**kw, svd_dtype=torch.float32), authors(**kw), "svd")
    assert 1e-10 < error < 1e-3
