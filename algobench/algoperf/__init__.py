"""Running AlgoPerf's PyTorch submission files unmodified.

`install()` puts light stand-ins for the two modules submissions import, `algoperf.spec` and
`algoperf.pytorch_utils` (also under the old package name `algorithmic_efficiency`), into
`sys.modules`, without jax or tensorflow. `adapter.adapt(module)` turns such a submission into
the harness's full form, handing it a workload that speaks AlgoPerf's API.
"""

from __future__ import annotations

import sys
import types

PACKAGES = ("algoperf", "algorithmic_efficiency")


def install() -> None:
    """Make `from algoperf import spec` (and the old name) resolve to the stand-ins."""
    from algobench.algoperf import pytorch_utils, spec  # (torch: only once a file imports algoperf)

    for name in PACKAGES:
        if name in sys.modules and not getattr(sys.modules[name], "__algobench_stand_in__", False):
            continue  # the real package is already imported: leave it alone
        package = types.ModuleType(name)
        package.__path__ = []
        package.__algobench_stand_in__ = True
        package.spec, package.pytorch_utils = spec, pytorch_utils
        sys.modules[name] = package
        sys.modules[f"{name}.spec"] = spec
        sys.modules[f"{name}.pytorch_utils"] = pytorch_utils


def mentions_algoperf(source: str) -> bool:
    return any(name in source for name in PACKAGES)
