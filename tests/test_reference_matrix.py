"""Muon and AuON (submissions/_matrix.py MatrixMomentum) against their authors' released code in
tests/references/matrix.py: float64 (the authors' bfloat16 Newton-Schulz cast replaced by float64),
120 steps, hidden matrices of three shapes (two of one shape: the batched path), a conv filter, a
bias and a scalar in the AdamW groups, None gradients, Nesterov on and off."""

from __future__ import annotations

import pytest
import torch

from algobench import submission as submission_lib
from tests.references import adaptive as R
from tests.references import harness as H
from tests.references import matrix as M

SHAPES = {"matrix": (6, 5), "bias": (5,), "conv": (4, 3, 3, 3), "scalar": (), "matrix2": (6, 5), "tall": (8, 3)}
MATRICES, REST = [0, 2, 4, 5], [1, 3]
INIT = H.initial(SHAPES)
SOMETIMES_NONE = H.with_none(H.noisy_gradient, lambda step, index: index in (1, 4) and step % 7 in (2, 3))
MATRIX_SOMETIMES_NONE = H.with_none(H.noisy_gradient, lambda step, index: index == 4 and step % 7 in (2, 3))


def module(name: str):
    return submission_lib.load(name).module


class Both:
    """Two optimizers stepped as one (the AuON script steps its auon and its AdamW)."""

    def __init__(self, *optimizers):
        self.optimizers = optimizers

    def step(self):
        for optimizer in self.optimizers:
            optimizer.step()


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_equals_keller_jordans_single_device_muon_with_aux_adam(nesterov):
    mod = module("muon")
    spec = [(MATRICES, {"use_matrix": True, "use_muon": True, "lr": 0.02, "momentum": 0.95, "weight_decay": 0.01}),
            (REST, {"use_matrix": False, "use_muon": False, "lr": 3e-3, "betas": (0.9, 0.95), "eps": 1e-10,
                    "weight_decay": 0.01})]

    def ours(groups):
        groups = [{k: v for k, v in g.items() if k != "use_muon"} for g in groups]
        return mod.MatrixMomentum(groups, direction=lambda X: mod.newton_schulz(X, 5), nesterov=nesterov,
                                  zero_missing_grads=True)

    def reference(groups):
        groups = [{k: v for k, v in g.items() if k != "use_matrix"} for g in groups]
        return M.SingleDeviceMuonWithAuxAdam(groups, nesterov=nesterov, ns_steps=5, dtype=torch.float64)

    error = H.compare(ours, reference, spec, SOMETIMES_NONE, init=INIT)
    assert error <= H.TOL, f"relative error {error:.3e}"


def test_muon_submission_fills_missing_gradients_with_zeros():
    """A matrix without a gradient still moves (momentum, weight decay), as in the reference."""
    mod = module("muon")
    params = H.make_params(INIT[:1])
    opt = mod.MatrixMomentum([{"params": params, "use_matrix": True, "weight_decay": 0.01}],
                             direction=lambda X: mod.newton_schulz(X, 5), zero_missing_grads=True)
    params[0].grad = torch.ones_like(params[0])
    opt.step()
    before = params[0].detach().clone()
    params[0].grad = None
    opt.step()
    assert not torch.equal(before, params[0].detach())


@pytest.mark.parametrize("nesterov", [True, False])
def test_auon_equals_the_auon_training_script(nesterov):
    """Plain AuON (ns_steps = 0) without weight decay on the matrices, AdamW (torch's, betas
    (0.9, 0.999), eps 1e-8, wd 0.1) on the rest, None gradients skipped as in the script."""
    mod = module("auon")
    spec = [(MATRICES, {"use_matrix": True, "lr": 0.1, "momentum": 0.95, "weight_decay": 0.0}),
            (REST, {"use_matrix": False, "lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1})]

    def ours(groups):
        return mod.MatrixMomentum(groups, direction=lambda X: mod.cosh_rms_direction(X, 0), nesterov=nesterov)

    def reference(groups):
        matrices, rest = groups
        return Both(M.AuonScript(matrices["params"], lr=matrices["lr"], momentum=matrices["momentum"],
                                 nesterov=nesterov, dtype=torch.float64),
                    R.TorchAdamW(rest["params"], lr=rest["lr"], betas=rest["betas"], eps=rest["eps"],
                                 weight_decay=rest["weight_decay"]))

    # torch's AdamW counts steps per tensor, MatrixMomentum per group: None gradients in the matrices only
    error = H.compare(ours, reference, spec, MATRIX_SOMETIMES_NONE, init=INIT)
    assert error <= H.TOL, f"relative error {error:.3e}"


def test_conv_aspect_scale_is_taken_from_the_flattened_filter():
    """The documented difference: the authors scale a 4-D filter by its kh / kw, algobench by the
    flattened (out, in * kh * kw) matrix; equal for the filters above, not for (8, 1, 1, 2)."""
    assert M.scale_of_flattened((4, 3, 3, 3)) == max(1, 3 / 3) ** 0.5
    assert M.scale_of_flattened((8, 1, 1, 2)) == 2.0 != max(1, 1 / 2) ** 0.5
