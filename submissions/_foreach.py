"""What the library's foreach optimizers share: the closure call and a group's tensor lists."""

import torch


def closure_loss(closure):
    """The loss of `closure` with gradients on (torch.optim's contract), or None without one."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def group_tensors(optimizer: torch.optim.Optimizer, group: dict, keys: tuple[str, ...]):
    """The group's parameters that have a gradient, their gradients, and one list per state key
    (zeros at a parameter's first step)."""
    params = [p for p in group["params"] if p.grad is not None]
    for p in params:
        state = optimizer.state[p]
        if not state:
            for key in keys:
                state[key] = torch.zeros_like(p)
    return params, [p.grad for p in params], [[optimizer.state[p][key] for p in params] for key in keys]
