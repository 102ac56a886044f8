"""Checkpoints of a running trial: all it needs to go on exactly where it stopped.

A checkpoint is one file, `checkpoint.pt` in the trial folder, written atomically with
`torch.save` and read with `torch.load(weights_only=True)`: tensors, numbers, strings and
containers only, never pickled code. It holds the model, the submission's optimizer state
(optimizers, modules and other stateful objects as their state dicts), the RNG states, the data
position (batches drawn), the clock (submission, eval and wall time so far), the eval and loss
histories, and the number of times the trial was resumed. The trial deletes it when it ends.
"""

from __future__ import annotations

import io
import random
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from algobench import distributed
from algobench.distributed import Dist
from algobench.files import atomic_write
from algobench.layout import CHECKPOINT
from algobench.specs import TrialConfig

FORMAT = 1


class CheckpointError(Exception):
    """The trial state cannot be written (an optimizer state this module cannot serialize)."""


@dataclass(frozen=True)
class Checkpoint:
    progress: dict[str, Any]  # the runner's loop state, as `dataclasses.asdict` gave it
    model: dict[str, torch.Tensor]
    optimizer_state: Any
    model_state: Any
    rng: dict[str, Any]


def path_in(trial_dir: Path) -> Path:
    return Path(trial_dir) / CHECKPOINT


def identity(config: TrialConfig, submission_sha256: str) -> str:
    """What must not change between the run that wrote a checkpoint and the one that reads it."""
    same = config.model_dump(mode="json", exclude={"results_dir", "data_dir"})
    return f"{same}|{submission_sha256}"


# --- writing and reading ---------------------------------------------------------------------------

def save(path: Path, *, identity: str, progress: dict[str, Any], model: nn.Module | dict[str, torch.Tensor],
         optimizer_state: Any, model_state: Any) -> None:
    """Write the checkpoint atomically: a kill at any moment leaves the old file or the new one.
    `model` is a module or, for a JAX trial, its weights as a state dict."""
    payload = {
        "format": FORMAT,
        "identity": identity,
        "progress": dict(progress),
        "model": unwrap(model).state_dict() if isinstance(model, nn.Module) else dict(model),
        "optimizer_state": to_saveable(optimizer_state, "optimizer_state"),
        "model_state": to_saveable(model_state, "model_state"),
        "rng": rng_states(),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write(Path(path), buf.getvalue())


def load(path: Path, *, identity: str) -> Checkpoint | str:
    """The checkpoint at `path`, or why it cannot be used (unreadable, or from another trial)."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            return f"not an algobench checkpoint of format {FORMAT}"
        if raw["identity"] != identity:
            return "it was written by a trial with another config or submission file"
        return Checkpoint(progress=dict(raw["progress"]), model=raw["model"],
                          optimizer_state=raw["optimizer_state"], model_state=raw["model_state"],
                          rng=raw["rng"])
    except Exception as err:  # truncated, garbled, foreign: all mean "start over"
        return f"unreadable ({type(err).__name__}: {' '.join(str(err).split())[:200]})"


def find(path: Path | None, *, identity: str, dist: Dist) -> tuple[Checkpoint | None, str | None]:
    """The checkpoint to resume from (None: start afresh) and why a checkpoint found was not used.
    An unusable one is set aside; every rank must be able to read it."""
    found = load(path, identity=identity) if path is not None and path.exists() else None
    if not distributed.all_true(dist, isinstance(found, Checkpoint)):  # (a collective: every rank calls it)
        if found is None:
            return None, None
        if dist.is_main:
            set_aside(path)
        return None, found if isinstance(found, str) else "another rank could not read it"
    return found, None


def set_aside(path: Path) -> Path:
    """Rename an unusable checkpoint to `checkpoint.pt.corrupt` (kept for a look, never read again)."""
    aside = Path(path).with_name(Path(path).name + ".corrupt")
    Path(path).replace(aside)
    return aside


def restore(ckpt: Checkpoint, *, model: nn.Module, optimizer_state: Any, model_state: Any) -> tuple[Any, Any]:
    """Load the checkpoint into a freshly built model and optimizer state; set the RNGs.

    Returns the (optimizer_state, model_state) to continue with."""
    unwrap(model).load_state_dict(ckpt.model)
    optimizer_state = restore_into(optimizer_state, ckpt.optimizer_state)
    model_state = restore_into(model_state, ckpt.model_state)
    set_rng_states(ckpt.rng)
    return optimizer_state, model_state


# --- the submission's optimizer state, whatever its shape ------------------------------------------

def to_saveable(obj: Any, where: str) -> Any:
    """Modules, optimizers, LR schedulers and any object with `state_dict`/`load_state_dict` become
    their state dicts; containers are walked; anything else is named in a CheckpointError."""
    if isinstance(obj, nn.Module):
        return {"__module__": to_saveable(unwrap(obj).state_dict(), f"{where}.state_dict()")}
    if callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None)):
        return {"__stateful__": to_saveable(obj.state_dict(), f"{where}.state_dict()")}
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, np.ndarray):
        # (ascontiguousarray makes a 0-d array 1-d: keep the shape)
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(obj).reshape(obj.shape))}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict):
        return {k: to_saveable(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        values = [to_saveable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return tuple(values) if isinstance(obj, tuple) else values
    raise CheckpointError(f"{where} holds a {type(obj).__name__}, which cannot be checkpointed (use tensors, "
                          "numbers, containers, or objects with state_dict and load_state_dict)")


def restore_into(fresh: Any, saved: Any) -> Any:
    """`saved` loaded into the same structure freshly built by the submission's init."""
    if isinstance(saved, dict) and len(saved) == 1:
        (tag, value), = saved.items()
        if tag in ("__module__", "__stateful__"):
            target = unwrap(fresh) if tag == "__module__" else fresh
            target.load_state_dict(restore_into(None, value))
            return fresh
        if tag == "__ndarray__":
            return value.numpy()
    if isinstance(saved, torch.Tensor):
        return saved.to(fresh.device) if isinstance(fresh, torch.Tensor) else saved
    if isinstance(saved, dict):
        base = fresh if isinstance(fresh, dict) else {}
        return {k: restore_into(base.get(k), v) for k, v in saved.items()}
    if isinstance(saved, (list, tuple)):
        same = isinstance(fresh, (list, tuple)) and len(fresh) == len(saved)
        values = [restore_into(f, v) for f, v in zip(fresh if same else [None] * len(saved), saved)]
        if same and hasattr(fresh, "_fields"):  # a namedtuple
            return type(fresh)(*values)
        return tuple(values) if isinstance(saved, tuple) else values
    return saved


def unwrap(model: nn.Module) -> nn.Module:
    """The module under DDP's and torch.compile's wrappers: its state dict has plain names."""
    from torch.nn.parallel import DistributedDataParallel

    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


# --- random number generators ----------------------------------------------------------------------

def rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, mt, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": list(mt), "gauss": py_gauss},
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


# --- data position and the request to stop ---------------------------------------------------------

class CountingIterator:
    """Passes batches through and counts them: the data position a checkpoint records."""

    def __init__(self, batches: Iterator, drawn: int = 0) -> None:
        self._batches = batches
        self.drawn = drawn

    def __iter__(self) -> CountingIterator:
        return self

    def __next__(self) -> Any:
        item = next(self._batches)
        self.drawn += 1
        return item

    def close(self) -> None:
        """Close the batch generator now: its DataLoader's worker processes stop with it."""
        close = getattr(self._batches, "close", None)
        if close is not None:
            close()


class SuspendOnSignal:
    """Turns a signal (SLURM's USR2 before preemption or the time limit) into a request that the
    runner honours at the next step boundary; `forward()` then hands the signal on to whatever
    handled it before (submitit: requeue the job and exit)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.requested = False
        self._previous: Callable | int | None = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __call__(self) -> bool:
        return self.requested

    def forward(self) -> None:
        previous = self.close()
        if callable(previous):
            previous(self.signum, None)

    def close(self) -> Callable | int | None:
        """Give the signal back to its previous handler (returned)."""
        previous, self._previous = self._previous, None
        if previous is not None:
            signal.signal(self.signum, previous)
        return previous
