"""Performance profiles and the benchmark score, exactly as AlgoPerf defines them.

All functions take time arrays shaped (..., submissions, workloads): any leading axes (e.g. the
bootstrap replicates) are carried along, so one call scores every replicate at once.
Infinity means "did not reach the target".

    r(s, w)     = t(s, w) / min_s' t(s', w); r > tau_max counts as a failure (r = inf)
    rho_s(tau)  = (1/n) #{w : r(s, w) <= tau}
    score_s     = 1/(tau_max - 1) * integral_1^tau_max rho_s(tau) dtau

rho is a step function, so the integral is exact by default: a workload with ratio r <= tau_max
adds (tau_max - r) / (tau_max - 1) / n to the score, a failure adds 0.

AlgoPerf's published scores are not exact: `compute_performance_profiles` samples rho on
`np.linspace(1, max_tau, num_points)` (num_points=100, max_tau=4) and `compute_leaderboard_score`
integrates those samples with the trapezoid rule and divides by the grid's range, max_tau - 1
(scoring/performance_profile.py and score_submissions.py in mlcommons/submissions_algorithms).
`tau_points=N` does the same. Either way n counts every scored workload, so a missing time (NaN)
or an infinite one is a failure; AlgoPerf's fixed 4x cutoff is our tau_max (4 by default).
The trapezoid rule smears each step of rho over one grid interval: on AlgoPerf's own tables it
moves scores by ~1e-3, enough to swap ranks, which is why both are offered.
"""

from __future__ import annotations

import numpy as np

from algobench.errors import UserError

SUBMISSION_AXIS, WORKLOAD_AXIS = -2, -1


def performance_ratios(times: np.ndarray, *, tau_max: float) -> np.ndarray:
    """r(s, w); failures and ratios above tau_max are inf. A ratio of exactly tau_max passes."""
    times = np.asarray(times, dtype=float)
    best = times.min(axis=SUBMISSION_AXIS, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = times / best
    # The best time can be 0 (target met at the first eval): those are ratio 1, others fail.
    ratios = np.where(best == 0, np.where(times == 0, 1.0, np.inf), ratios)
    # A workload nobody reached gives inf / inf = nan: a failure for everyone.
    ratios = np.where(np.isnan(ratios), np.inf, ratios)
    return np.where(ratios <= tau_max, ratios, np.inf)


def profile(ratios: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """rho_s(tau), shaped (..., submissions, len(taus))."""
    hits = ratios[..., :, :, None] <= np.asarray(taus, dtype=float)
    return hits.mean(axis=-2)


def tau_grid(tau_max: float, tau_points: int) -> np.ndarray:
    """AlgoPerf's tau grid: `tau_points` linearly spaced points from 1 to tau_max, both included."""
    return np.linspace(1.0, tau_max, num=tau_points)


def benchmark_scores(ratios: np.ndarray, *, tau_max: float,
                     tau_points: int | None = None) -> np.ndarray:
    """The normalised area under rho on [1, tau_max], shaped (..., submissions): exact, or with
    `tau_points` the trapezoid rule on AlgoPerf's grid (`tau_grid`)."""
    if tau_points is not None:
        taus = tau_grid(tau_max, tau_points)
        rho = profile(ratios, taus)
        # np.trapezoid's own sum, written out (numpy < 2 names it trapz): the same bits
        area = np.add.reduce(np.diff(taus) * (rho[..., 1:] + rho[..., :-1]) / 2.0, axis=-1)
        return area / (taus.max() - taus.min())
    with np.errstate(invalid="ignore"):
        area = np.clip((tau_max - ratios) / (tau_max - 1.0), 0.0, 1.0)
    area = np.where(np.isfinite(ratios), area, 0.0)
    return area.mean(axis=WORKLOAD_AXIS)


def variant_map(workloads: list[str], specs: list[str]) -> dict[str, str]:
    """{variant label: base label} from `VARIANT=BASE` specs or `auto`.

    Names match whole labels (`vit_glu`) or the workload part of `workload/size` labels, so
    `vit_glu=vit` maps `vit_glu/small` to `vit/small`. `auto` pairs every `name_suffix` with the
    longest `name` prefix that is also present.
    """
    def split(label: str) -> tuple[str, str]:
        name, sep, size = label.partition("/")
        return name, sep + size

    present = set(workloads)
    mapping: dict[str, str] = {}
    for spec in specs:
        if spec == "auto":
            for label in workloads:
                name, size = split(label)
                parts = name.split("_")
                for cut in range(len(parts) - 1, 0, -1):
                    base = "_".join(parts[:cut]) + size
                    if base in present:
                        mapping[label] = base
                        break
            continue
        variant, sep, base = spec.partition("=")
        if not sep or not variant or not base:
            raise UserError(f"--variant-rule '{spec}' is not VARIANT=BASE (or auto)")
        matched = [label for label in workloads if split(label)[0] == variant]
        if not matched:
            raise UserError(f"--variant-rule: no workload '{variant}' in these results "
                            f"(workloads: {', '.join(workloads)})")
        for label in matched:
            target = base + split(label)[1]
            if target not in present:
                raise UserError(f"--variant-rule: variant '{label}' has no base '{target}' "
                                "in these results")
            mapping[label] = target
    return mapping


def apply_variant_rule(times: np.ndarray, *, workloads: list[str], variants: dict[str, str],
                       tau_max: float) -> tuple[np.ndarray, list[str]]:
    """AlgoPerf v0.5: a base workload counts only if its variants are reached within tau_max.

    Same order as AlgoPerf's `compute_performance_profiles`: (1) a variant is unreached where
    its base is; (2) every time above tau_max x the best on its workload becomes inf; (3) a base
    time becomes inf where any of its variants is inf. Only base workloads are then scored.
    Returns (times over the base workloads, their labels).
    """
    if not variants:
        return times, list(workloads)
    times = np.array(times, dtype=float, copy=True)
    column = {label: i for i, label in enumerate(workloads)}
    for variant, base in variants.items():
        times[..., column[variant]] = np.where(np.isinf(times[..., column[base]]), np.inf,
                                               times[..., column[variant]])
    best = times.min(axis=SUBMISSION_AXIS, keepdims=True)
    times = np.where(times > tau_max * best, np.inf, times)
    for variant, base in variants.items():
        times[..., column[base]] = np.where(np.isinf(times[..., column[variant]]), np.inf,
                                            times[..., column[base]])
    keep = [i for i, label in enumerate(workloads) if label not in variants]
    return times[..., keep], [workloads[i] for i in keep]


def speedups(times: np.ndarray, *, baseline: int, budgets: np.ndarray,
             failure_penalty_s: float = 1.0) -> np.ndarray:
    """t_baseline / t_submission per workload, shaped like `times`.

    As in AlgoPerf's compute_speedups.py, a failure counts as the workload's budget plus
    `failure_penalty_s` (1 s), for the baseline and the submission alike.
    """
    capped = np.where(np.isfinite(times), times, np.asarray(budgets, float) + failure_penalty_s)
    base = capped[..., baseline : baseline + 1, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        return base / capped


def geometric_mean(values: np.ndarray, *, axis: int = -1) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.exp(np.log(values).mean(axis=axis))
