"""The submissions library: facts about a submission that `algobench list submissions` reports.

`state_bytes_per_param(sub)` measures the optimizer state a submission keeps, in bytes per model
parameter: it builds the GPT-2 smoke model on CPU, runs one update on a random token batch through
the submission's own `init_optimizer_state` / `update_params`, and sums the bytes of every tensor
reachable from the returned optimizer state (an optimizer's `state`, its other tensor attributes,
dicts, lists, modules), each storage once, the model's own parameters excluded. AdamW: 8 (two fp32
moments), SGD with momentum: 4, 8-bit AdamW: about 2.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from algobench import submission as submission_lib
from algobench.errors import UserError
from algobench.files import write_json
from algobench.forms.base import contract_kwargs, takes_train_state
from algobench.forms.simple import simple_step
from algobench.frameworks.torch import Batch, TorchBackend, TorchFramework, TorchWorkload
from algobench.specs import RunOptions, TrialConfig
from algobench.workload import ensure_trial_data
from workloads import WORKLOADS

MEASURE_WORKLOAD, MEASURE_SIZE = "gpt2", "smoke"
MEASURE_VERSION = 1  # bump when the measurement changes: cached values are keyed on it
_SKIP_ATTRS = ("param_groups", "defaults", "state")


def smoke_workload() -> TorchWorkload:
    """The GPT-2 smoke workload on CPU in fp32; building it reads no data."""
    spec = WORKLOADS.get(MEASURE_WORKLOAD)
    config = TrialConfig(workload=MEASURE_WORKLOAD, size=MEASURE_SIZE, submission="-")
    return TorchFramework(TorchBackend.choose("cpu", "fp32", "off")).prepare(config, spec, spec.preset(MEASURE_SIZE))


def random_batch(workload: TorchWorkload, *, seed: int = 0) -> Batch:
    """A batch of uniformly random tokens shaped like the workload's training batches."""
    model_cfg = workload.preset.config.model
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(model_cfg.vocab_size, (workload.preset.batch_size, model_cfg.block_size + 1),
                           generator=generator)
    return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}


def state_tensors(obj: Any, *, _seen: set[int] | None = None) -> Iterator[torch.Tensor]:
    """Every tensor reachable from `obj` (optimizer state as a submission returns it)."""
    seen = set() if _seen is None else _seen
    if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None), TorchWorkload, types.ModuleType)):
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, torch.optim.Optimizer):
        yield from state_tensors(list(obj.state.values()), _seen=seen)
        extras = [v for k, v in vars(obj).items() if not k.startswith("_") and k not in _SKIP_ATTRS]
        yield from state_tensors(extras, _seen=seen)
    elif isinstance(obj, torch.nn.Module):
        yield from obj.parameters()
        yield from obj.buffers()
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from state_tensors(value, _seen=seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for value in obj:
            yield from state_tensors(value, _seen=seen)
    elif hasattr(obj, "__dict__") and not callable(obj):  # a dataclass or plain object holding state
        yield from state_tensors(list(vars(obj).values()), _seen=seen)


def state_bytes(optimizer_state: Any, model: torch.nn.Module) -> int:
    """Bytes of the tensors in `optimizer_state`, each storage once, `model`'s parameters excluded."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    counted: set[tuple[int, int, torch.dtype]] = set()
    total = 0
    for t in state_tensors(optimizer_state):
        if t.untyped_storage().data_ptr() in params:
            continue
        key = (t.data_ptr(), t.numel(), t.dtype)
        if key not in counted:
            counted.add(key)
            total += t.numel() * t.element_size()
    return total


def state_bytes_per_param(sub: submission_lib.Submission, *, seed: int = 0) -> float:
    """The submission's optimizer state after one update of the GPT-2 smoke model, in bytes per
    parameter (the state most optimizers allocate lazily, at their first step)."""
    workload = smoke_workload()
    model = workload.init_model(seed)
    hparams = submission_lib.make_hparams(sub.defaults)
    rng = np.array([seed, 0], dtype=np.int32)
    state = sub.init_optimizer_state(workload=workload, model_params=model, model_state=None,
                                     hyperparameters=hparams, rng=rng)
    kwargs = contract_kwargs(workload=workload, params=model, model_state=None, hyperparameters=hparams,
                             loss_type=workload.loss_type, optimizer_state=state, eval_results=[], global_step=0,
                             rng=rng)
    if takes_train_state(sub.update_params):
        kwargs["train_state"] = {"accumulated_submission_time": 0.0, "global_step": 0, "last_eval_time": 0}
    out = sub.update_params(batch=random_batch(workload, seed=seed), **kwargs)
    state, model = out[0], out[1]
    n_params = sum(p.numel() for p in model.parameters())
    return state_bytes(state, model) / n_params


def cached_state_bytes_per_param(sub: submission_lib.Submission, *, cache: Path | None = None) -> float:
    """`state_bytes_per_param`, remembered in `cache` (default ~/.cache/algobench/state_bytes.json)
    per submission file content and torch version, so `list submissions` measures each once."""
    cache = cache or Path.home() / ".cache" / "algobench" / "state_bytes.json"
    key = f"{sub.name}:{sub.sha256}:{torch.__version__}:v{MEASURE_VERSION}"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known = {k: v for k, v in known.items() if not k.startswith(f"{sub.name}:")}  # older versions
        known[key] = state_bytes_per_param(sub)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_json(cache, known)
        except OSError:  # a read-only home: measure again next time
            pass
    return float(known[key])


def record_grad_norms(submission: str, *, steps: int, seed: int = 0, workload: str = MEASURE_WORKLOAD,
                      size: str = MEASURE_SIZE, data_dir: Path = Path("data"), device: str = "cpu"):
    """Train a simple-form submission for `steps` updates as the harness does (zero_grad, loss,
    backward, clip, lr from its schedule, step; no evaluation) and return the gradient norms
    before clipping, in the format the refined schedule reads (algobench.schedules): a DataFrame
    with step, grad_norm (l2 of the whole gradient), grad_norm_l1 and train_loss. The norms stay
    on the device until the end: one host sync per run, not per step."""
    import pandas as pd  # (pandas: only for this recording, not for `list submissions`)

    sub = submission_lib.load(submission)
    if sub.form != "simple":
        raise UserError(f"recording gradient norms needs a simple-form submission (make_optimizer and "
                        f"lr_schedule); {sub.name} has the full form")
    if steps < 2:
        raise UserError(f"record at least 2 steps, got {steps}")
    config = TrialConfig(workload=workload, size=size, submission=submission, seed=seed, data_dir=data_dir,
                         options=RunOptions(device=device))
    spec = WORKLOADS.get(workload)
    ensure_trial_data(spec, config)
    wl = TorchFramework(TorchBackend.choose(device)).prepare(config, spec, spec.preset(size))
    hparams = submission_lib.make_hparams(sub.defaults)
    model = wl.init_model(seed)
    optimizer = sub.module.make_optimizer(model=model, hparams=hparams, workload=wl)
    batches = wl.train_batches(seed=seed, batch_size=wl.preset.batch_size)
    l2, l1, losses = [], [], []

    def norms(grads: list[torch.Tensor]) -> None:
        l2.append(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
        l1.append(torch.stack(torch._foreach_norm(grads, 1)).sum())

    for step in range(steps):
        losses.append(simple_step(sub.module, optimizer, workload=wl, model=model, batch=next(batches),
                                  hparams=hparams, step=step, on_grads=norms))
    return pd.DataFrame({"step": np.arange(steps), "grad_norm": torch.stack(l2).cpu().double().numpy(),
                         "grad_norm_l1": torch.stack(l1).cpu().double().numpy(),
                         "train_loss": torch.stack(losses).cpu().double().numpy()})
