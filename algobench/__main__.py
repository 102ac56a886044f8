"""`python -m algobench`, and `torchrun --nproc-per-node N -m algobench run ...` for data parallelism."""

from algobench.cli import main

main()
