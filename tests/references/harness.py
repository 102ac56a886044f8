"""What every reference test shares: parameters of four shapes, a gradient stream that depends on
the current parameters, a runner that steps two optimizers on the same stream, and the error metric.

The metric is the distance between the two final parameter sets relative to how far the reference
moved from its starting point, ||p_ref - p_ours|| / ||p_ref - p_init||, the worst over tensors (a
learning rate off by 1e-4 gives 1e-4 here; relative to ||p_ref|| it could pass unnoticed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

SHAPES = {"matrix": (6, 5), "bias": (5,), "conv": (4, 3, 3, 3), "scalar": ()}
STEPS = 120
TOL = 1e-10  # float64

GradFn = Callable[[int, int, torch.Tensor], "torch.Tensor | None"]  # (step, tensor index, p) -> gradient


def initial(shapes: dict[str, tuple[int, ...]] = SHAPES, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=torch.float64) for shape in shapes.values()]


def noisy_gradient(step: int, index: int, p: torch.Tensor, *, scale: float = 1.0) -> torch.Tensor:
    """A fixed noise draw per (step, tensor) plus a pull towards 0 (a quadratic's gradient), so the
    stream depends on where the optimizer is, as a real loss does."""
    gen = torch.Generator().manual_seed(1_000 * step + index)
    noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
    return scale * noise + 0.5 * p


def with_none(grad_fn: GradFn, pattern: Callable[[int, int], bool]) -> GradFn:
    """`grad_fn`, but None where `pattern(step, index)` holds (a tensor unused at that step)."""
    return lambda step, index, p: None if pattern(step, index) else grad_fn(step, index, p)


def make_params(values: Sequence[torch.Tensor]) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(v.clone()) for v in values]


def groups_of(params: Sequence[torch.Tensor], spec: Sequence[tuple[Sequence[int], dict]]) -> list[dict]:
    """Param groups from [(tensor indices, options)]."""
    return [{"params": [params[i] for i in indices], **options} for indices, options in spec]


def run(make: Callable[[list[dict]], torch.optim.Optimizer], init: Sequence[torch.Tensor],
        spec: Sequence[tuple[Sequence[int], dict]], grad_fn: GradFn, *, steps: int = STEPS,
        before_step: Callable[[torch.optim.Optimizer, int], None] | None = None) -> list[torch.Tensor]:
    """The parameters after `steps` steps of the optimizer `make(groups)` on `grad_fn`'s stream."""
    params = make_params(init)
    optimizer = make(groups_of(params, spec))
    for step in range(steps):
        for i, p in enumerate(params):
            p.grad = grad_fn(step, i, p.detach().clone())
        if before_step is not None:
            before_step(optimizer, step)
        optimizer.step()
    return [p.detach() for p in params]


def relative_error(reference: Sequence[torch.Tensor], ours: Sequence[torch.Tensor],
                   init: Sequence[torch.Tensor]) -> float:
    """max over tensors of ||p_ref - p_ours|| / ||p_ref - p_init|| (a tensor the reference did not
    move must not move in ours either: then the error is 0, or inf if it did)."""
    worst = 0.0
    for ref, got, start in zip(reference, ours, init, strict=True):
        moved = (ref - start).norm().item()
        diff = (ref - got).norm().item()
        if moved == 0.0:
            worst = max(worst, 0.0 if diff == 0.0 else float("inf"))
        else:
            worst = max(worst, diff / moved)
    return worst


def compare(ours: Callable[[list[dict]], torch.optim.Optimizer], reference: Callable[[list[dict]], torch.optim.Optimizer],
            spec: Sequence[tuple[Sequence[int], dict]], grad_fn: GradFn = noisy_gradient, *, steps: int = STEPS,
            init: Sequence[torch.Tensor] | None = None, before_step=None) -> float:
    """relative_error of `ours` against `reference`, both run from the same start on the same stream."""
    init = initial() if init is None else init
    want = run(reference, init, spec, grad_fn, steps=steps, before_step=before_step)
    got = run(ours, init, spec, grad_fn, steps=steps, before_step=before_step)
    return relative_error(want, got, init)


ALL = ([0, 1, 2, 3], {})  # every tensor in one group
