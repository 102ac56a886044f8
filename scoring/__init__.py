"""Scoring for algobench: time to target, AlgoPerf performance profiles, bootstrap intervals.

Modules, in the order data flows through them:
- `load`: trial folders or a published CSV table -> tidy DataFrames (the only file reads);
- `ttt`: trials -> per-study and per-workload times to target (external / self ruleset);
- `profiles`: ratios, rho(tau), the exact benchmark score, the variant rule, speedups;
- `bootstrap`: resampling studies, percentile intervals;
- `score`: the `Scorecard` that every table, plot and report shows;
- `pipeline`: options and checks (hardware, framework, ruleset) from folders to a Scored;
- `tables`, `plots`, `report`: text, matplotlib figures, self-contained HTML.

Nothing is imported here, so `import scoring.load` does not pull in matplotlib.
"""
