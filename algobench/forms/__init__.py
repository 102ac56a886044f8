"""Submission forms, each turned into the full form the runner calls, in one place each:
`base` (the full form itself and the calling contract), `simple` (make_optimizer + lr_schedule),
`optax` (make_optax + lr_schedule, for JAX; imported only then), and AlgoPerf's own files
(algobench/algoperf/adapter.py)."""
