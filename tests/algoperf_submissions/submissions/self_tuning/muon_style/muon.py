"""The Muon helper module a self-tuning submission imports as a sibling, written as the published
Muon submissions' `muon.py` is: orthogonalized momentum (Newton-Schulz) for the 2-D weights,
the rest left to another optimizer."""

import torch


def zeropower_via_newtonschulz5(grad: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    a, b, c = (3.4445, -4.7750, 2.0315)
    x = grad.float() / (grad.norm() + eps)
    transposed = x.size(0) > x.size(1)
    if transposed:
        x = x.T
    for _ in range(steps):
        s = x @ x.T
        x = a * x + (b * s + c * s @ s) @ x
    return x.T if transposed else x


class MuonSingleDevice(torch.optim.Optimizer):
    def __init__(self, params, lr=0.02, beta=0.95, weight_decay=0.0, nesterov=True, ns_steps=5):
        super().__init__(params, dict(lr=lr, beta=beta, weight_decay=weight_decay, nesterov=nesterov,
                                      ns_steps=ns_steps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(p)
                buf = state["momentum"]
                buf.mul_(group["beta"]).add_(p.grad)
                g = p.grad.add(buf, alpha=group["beta"]) if group["nesterov"] else buf
                update = zeropower_via_newtonschulz5(g, steps=group["ns_steps"])
                scale = max(1.0, p.size(0) / p.size(1)) ** 0.5
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update.to(p.dtype), alpha=-group["lr"] * scale)


def split_params_muon_adam(model: torch.nn.Module):
    """2-D hidden weights to Muon; embeddings, the head, norms and biases to the other optimizer."""
    muon, adam = [], []
    for name, p in model.named_parameters():
        hidden_matrix = p.ndim == 2 and "wte" not in name and "wpe" not in name and "lm_head" not in name
        (muon if hidden_matrix else adam).append(p)
    return muon, adam
