"""The frameworks a trial can run in: torch (always) and JAX (the optional `jax` extra).

`framework_for` picks one for a trial and fails fast when the workload or the machine cannot
run it. Each framework's backend, workload base and runner hooks live side by side in
`torch.py` and `jax.py`; `base.py` holds what the runner asks of any of them.
"""

from __future__ import annotations

from algobench.distributed import Dist
from algobench.errors import UserError
from algobench.frameworks.base import Framework
from algobench.frameworks.torch import TorchBackend, TorchFramework
from algobench.specs import TrialConfig
from algobench.workload import WorkloadSpec


def framework_for(config: TrialConfig, spec: WorkloadSpec, dist: Dist) -> Framework:
    """The framework `config` runs in."""
    opts = config.options
    if config.framework == "torch":
        return TorchFramework(TorchBackend.choose(opts.device, opts.precision, opts.compile))
    if config.framework not in spec.frameworks:
        raise UserError(f"workload {spec.name} has no {config.framework} version; frameworks: "
                        f"{', '.join(spec.frameworks)}")
    if dist.active:
        raise UserError("a JAX trial is data-parallel over the local devices of one process: "
                        "start it without torchrun (one SLURM task per node)")
    try:  # jax is an optional extra: imported only for a JAX trial
        from algobench.frameworks.jax import JaxFramework
    except ImportError as err:
        raise UserError(f"--framework jax needs the jax extra ({err}): pip install -e '.[jax]'") from None
    return JaxFramework(opts)
