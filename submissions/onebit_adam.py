"""1-bit Adam: Adam during a warmup, then frozen variance and 1-bit compressed momentum with error
feedback (Tang et al., 2021), with linear warmup and cosine decay of the learning rate.

Algorithm 1 of the paper with DeepSpeed's `OnebitAdam` conventions (the paper's names -> code):
    warmup, t <= T_w (`freeze_step` = `freeze_frac` * step_hint): plain Adam on the averaged g,
        m = beta1 m + (1 - beta1) g ;  v = beta2 v + (1 - beta2) g^2
    compression stage, t > T_w: v is frozen; each worker i keeps its own momentum and errors
        m_i = beta1 m + (1 - beta1) g_i                       (local gradient, no all-reduce)
        worker: x_i = m_i + e_i ; C(x) = (||x||_2 / sqrt(n)) sign(x) ; e_i <- x_i - C(x_i)
        server (chunk j of every worker's C(x_i), all-to-all): y_j = mean_i C(x_i)_j + s_j ;
                s_j <- y_j - C(y_j) ;  m <- all-gather of C(y_j)          (the compressed all-reduce)
    every step: theta <- theta - lr (m / (sqrt(v) + eps) + wd theta)
sign(0) is +1; each tensor is flattened and zero-padded to a multiple of 8 * world_size (as
DeepSpeed pads), so C's scale counts the padding; signs travel packed 8 per byte. Under
torch.distributed (initialized, world_size > 1) only the compressed momentum is all-reduced after
the warmup: on a DDP-wrapped model the optimizer turns DDP's gradient all-reduce off when the
warmup ends (`require_backward_grad_sync = False`, what `no_sync()` sets and what DeepSpeed's
`enable_backward_allreduce = False` does); without DDP it averages the warmup gradients itself.
On one process the same compression and error feedback apply (worker, then server stage).

Deliberate differences from DeepSpeed: it skips compression when world_size == 1 (we compress, as
the algorithm does); it spends the first step() on initialization without moving the weights (we
update from step 1); it drops the error buffers when a checkpoint is loaded (ours are in the state
and round-trip, so a resumed run on the same world size continues identically). Like DeepSpeed
there is no bias correction, eps is added after the square root and weight decay is the
decoupled `update += wd * theta`.
"""

import math

import torch
import torch.distributed as dist

from algobench import schedules
from algobench.workload import param_groups

PAPER = "1-bit Adam: Communication Efficient Large-Scale Training with Adam's Convergence Speed (Tang et al., 2021)"

REFERENCE = "microsoft/DeepSpeed, deepspeed/runtime/fp16/onebit/adam.py (OnebitAdam; commit 06fa7ee)"
EQUAL_UNDER = ("float64, the warmup stage (full-precision Adam without bias correction), weight decay on and off,"
               " one process, after DeepSpeed's initialization call (one step later, freeze_step one larger); "
               "tested in tests/test_reference_quantized.py. The compression stage is compared with the paper's "
               "equations in tests/test_library_advanced_onebit.py")
REFERENCE_TEST = "tests/test_reference_quantized.py::test_onebit_adam_warmup_equals_deepspeed"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    ("On one process the momentum is compressed after the warmup (the algorithm); DeepSpeed skips compression "
     "when its world size is 1."),
    ("The first step() updates the weights; DeepSpeed's first step() only initializes (counts a step, moves "
     "nothing), so its warmup has freeze_step - 1 Adam updates where this has freeze_step."),
    "The error buffers are kept in the state and survive a checkpoint; DeepSpeed drops them on load.",
    ("make_optimizer exempts biases and norms from weight decay (algobench.workload.param_groups); the release "
     "decays every tensor it is given."),
]

HPARAMS = {
    "learning_rate": 3e-3,
    "beta1": 0.9,
    "beta2": 0.95,
    "eps": 1e-8,
    "weight_decay": 0.1,
    "freeze_frac": 0.15,
    "warmup_frac": 0.05,
    "grad_clip": 1.0,
}

SEARCH_SPACE = {
    "learning_rate": {"min": 1e-3, "max": 1e-2, "scaling": "log"},
    "beta2": {"feasible_points": [0.95, 0.99, 0.999]},
    "weight_decay": {"min": 1e-3, "max": 0.3, "scaling": "log"},
    "freeze_frac": {"feasible_points": [0.1, 0.15, 0.25]},
    "warmup_frac": {"feasible_points": [0.02, 0.05, 0.1]},
}

def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Bool tensor of n (a multiple of 8) -> uint8 tensor of n / 8 bytes, big-endian as numpy/cupy."""
    weights = 2 ** torch.arange(7, -1, -1, device=bits.device, dtype=torch.uint8)
    return (bits.view(-1, 8).to(torch.uint8) * weights).sum(-1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor) -> torch.Tensor:
    shifts = torch.arange(7, -1, -1, device=packed.device, dtype=torch.uint8)
    return ((packed.unsqueeze(-1) >> shifts) & 1).flatten().bool()


def compress(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, sign bits) of C(x) = ||x|| / sqrt(n) * sign(x), sign(0) = +1."""
    return x.norm() / math.sqrt(x.numel()), x >= 0


def signed(bits: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (bits.to(scale.dtype) * 2 - 1) * scale


def compressed_allreduce(m: torch.Tensor, worker_error: torch.Tensor, server_error: torch.Tensor) -> torch.Tensor:
    """DeepSpeed's two-stage 1-bit all-reduce of `m` with error feedback (errors updated in place)."""
    world = world_size()
    flat = m.reshape(-1)
    x = torch.cat([flat, flat.new_zeros(worker_error.numel() - flat.numel())]) + worker_error
    scale, bits = compress(x)
    worker_error.copy_(x - signed(bits, scale))
    if world == 1:
        y = signed(bits, scale) + server_error
    else:  # phase 1: server chunk j gathers every worker's signs of chunk j
        packed = pack_bits(bits).view(world, -1)
        received = torch.empty_like(packed)
        dist.all_to_all_single(received, packed)
        scales = _all_gather(scale.reshape(1))
        y = (signed(unpack_bits(received).view(world, -1), scales.view(world, 1) / world)).sum(0) + server_error
    s_scale, s_bits = compress(y)
    server_error.copy_(y - signed(s_bits, s_scale))
    if world == 1:
        out = signed(s_bits, s_scale)
    else:  # phase 2: every worker gathers all server chunks
        chunks = _all_gather(pack_bits(s_bits))
        scales = _all_gather(s_scale.reshape(1))
        out = signed(unpack_bits(chunks).view(world, -1), scales.view(world, 1)).reshape(-1)
    return out[:flat.numel()].view_as(m)


def _all_gather(t: torch.Tensor) -> torch.Tensor:
    out = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(out, t)
    return torch.stack(out)


class OnebitAdam(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, freeze_step: int = 100_000,
                 ddp_module: torch.nn.parallel.DistributedDataParallel | None = None) -> None:
        if freeze_step < 0:
            raise ValueError(f"freeze_step must be >= 0, got {freeze_step}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                      "freeze_step": freeze_step})
        self._ddp = ddp_module  # its gradient all-reduce is switched off after the warmup

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        world = world_size()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if not self.state[p]:
                    self.state[p].update(exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
            t = group["step"] = group.get("step", 0) + 1
            beta1, beta2 = group["betas"]
            grads = [p.grad for p in params]
            m = [self.state[p]["exp_avg"] for p in params]
            v = [self.state[p]["exp_avg_sq"] for p in params]
            if t <= group["freeze_step"]:  # warmup: full-precision Adam on the averaged gradient
                if world > 1 and self._ddp is None:  # (DDP has averaged them already)
                    for g in grads:
                        dist.all_reduce(g)
                    torch._foreach_div_(grads, world)
                torch._foreach_lerp_(m, grads, 1 - beta1)
                torch._foreach_mul_(v, beta2)
                torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
            else:  # frozen v, local momentum, compressed all-reduce of the momentum
                torch._foreach_lerp_(m, grads, 1 - beta1)
                for p, m_p in zip(params, m):
                    state = self.state[p]
                    if "worker_error" not in state:
                        padded = -(-p.numel() // (8 * world)) * 8 * world
                        state["worker_error"] = p.new_zeros(padded)
                        state["server_error"] = p.new_zeros(padded // world)
                    m_p.copy_(compressed_allreduce(m_p, state["worker_error"], state["server_error"]))
            denom = torch._foreach_sqrt(v)
            torch._foreach_add_(denom, group["eps"])
            update = torch._foreach_div(m, denom)
            if group["weight_decay"]:
                torch._foreach_add_(update, params, alpha=group["weight_decay"])
            torch._foreach_add_(params, update, alpha=-group["lr"])
            if self._ddp is not None and t >= group["freeze_step"]:
                self._ddp.require_backward_grad_sync = False  # from now on gradients stay local
        return loss


def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    ddp = model if isinstance(model, torch.nn.parallel.DistributedDataParallel) else None
    return OnebitAdam(param_groups(model, workload, weight_decay=hparams.weight_decay), lr=hparams.learning_rate,
                      betas=(hparams.beta1, hparams.beta2), eps=hparams.eps,
                      freeze_step=max(int(hparams.freeze_frac * workload.step_hint), 1), ddp_module=ddp)


lr_schedule = schedules.lr_schedule("warmup_cosine", warmup="warmup_frac")
