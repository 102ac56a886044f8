"""8-bit AdamW (Dettmers et al., 2022): both moments stored block-wise quantized in 8 bits with the
dynamic data type; warmup + cosine. Pure torch (CPU or GPU), no bitsandbytes needed.

Update, as bitsandbytes' AdamW8bit block-wise kernel (beta1, beta2 as in code):
    m, v = dequantize(state1, absmax1), dequantize(state2, absmax2)       (fp32)
    m <- beta1 m + (1 - beta1) g ;  v <- beta2 v + (1 - beta2) g^2
    theta <- theta - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)   (the fp32 m, v)
    theta <- theta * (1 - lr * wd)     (decoupled, after the step as bitsandbytes' CUDA kernel;
                                        its 0.50.2 CPU path decays before the step)
    state1, absmax1 = quantize(m, signed map) ; state2, absmax2 = quantize(v, unsigned map)
Block-wise quantization (the paper's Section 2): the flattened tensor is cut into blocks of
`block_size` = 2048, the paper's block size and bitsandbytes' before 0.44 (bitsandbytes >= 0.44
quantizes optimizer states in blocks of 256: pass block_size=256 for its current blocking; 2048 is
kept so that results and state sizes stay comparable with earlier runs);
each block keeps absmax = max |x| in fp32 and each value the uint8 index of the nearest entry of
x / absmax in the 256-value dynamic map (bitsandbytes' create_dynamic_map: a sign, an exponent
of up to 7 zero bits ended by a one, and linear fraction bits); a quantized m keeps its sign (the
kernel's one-index fix). Tensors smaller than 4096 elements keep fp32 moments, as bitsandbytes'
min_8bit_size. State: 2 bytes per parameter plus 8 bytes per block. Not included: the paper's
StableEmbedding layer (a model change) and percentile clipping.
"""

import itertools

import torch

from algobench import schedules
from algobench.workload import param_groups

PAPER = "8-bit Optimizers via Block-wise Quantization (Dettmers et al., ICLR 2022)"

REFERENCE = ("bitsandbytes-foundation/bitsandbytes, bitsandbytes/optim/optimizer.py, backends/cpu/ops.py and "
             "backends/default/ops.py (bitsandbytes 0.50.2, its pure-PyTorch path; the CUDA kernel "
             "csrc/kernels.cu was not compared)")
EQUAL_UNDER = ("float32, block_size=256, weight_decay=0, min_8bit_size=256, within a state tolerance (per step at"
               " most 0.05% of the 8-bit indices differ; parameters within 2e-4 of the distance moved: rounding "
               "to 256 codes is discontinuous); tested in tests/test_reference_quantized.py")
REFERENCE_TEST = "tests/test_reference_quantized.py::test_adamw_8bit_equals_bitsandbytes_within_the_state_tolerance"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    ("Blocks of 2048 by default (the paper's, and bitsandbytes' before 0.44); bitsandbytes 0.44 and later "
     "quantize in blocks of 256 (block_size=256 gives that)."),
    ("Weight decay is applied after the Adam step (as bitsandbytes' CUDA kernel does, as we read it); "
     "bitsandbytes 0.50.2's CPU path applies it before, so with weight decay each step's update differs by a "
     "factor 1 - lr * wd."),
    ("A quantized momentum keeps its sign (the CUDA kernel's one-index fix); the CPU path rounds a tiny momentum "
     "to the nearest code, 0 included."),
    "Pure torch: no paged states, no percentile clipping, no StableEmbedding.",
    ("The step count t is kept per parameter group, the release's per tensor: equal while every tensor of a group"
     " has a gradient at every step; a tensor whose gradient is None at some steps gets the group's t in its bias"
     " corrections."),
    ("make_optimizer exempts biases and norms from weight decay (algobench.workload.param_groups); the release "
     "decays every tensor it is given."),
]

HPARAMS = {
    "learning_rate": 3e-3,
    "beta1": 0.9,
    "beta2": 0.95,
    "eps": 1e-8,
    "weight_decay": 0.1,
    "warmup_frac": 0.05,
    "grad_clip": 1.0,
}

SEARCH_SPACE = {  # AdamW's (submissions/adamw.py): 8-bit states are a drop-in replacement
    "learning_rate": {"min": 3e-4, "max": 1e-2, "scaling": "log"},
    "beta1": {"feasible_points": [0.9]},
    "beta2": {"min": 0.9, "max": 0.999, "scaling": "linear"},
    "weight_decay": {"min": 1e-3, "max": 0.3, "scaling": "log"},
    "warmup_frac": {"feasible_points": [0.02, 0.05, 0.1]},
}


def dynamic_map(*, signed: bool, max_exponent_bits: int = 7, total_bits: int = 8) -> torch.Tensor:
    """The 256 sorted values of the dynamic data type in [-1, 1] (signed) or [0, 1]: for exponent
    i, 10^(i - 6) times the midpoints of an even split of [0.1, 1]; plus 0 and 1."""
    values = []
    non_sign_bits = total_bits - 1
    for i in range(max_exponent_bits):
        n = 2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed else \
            2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1
        bounds = torch.linspace(0.1, 1, n)  # fp32 arithmetic, as bitsandbytes: the same 256 floats
        means = (10 ** (i - (max_exponent_bits - 1)) * ((bounds[:-1] + bounds[1:]) / 2.0)).tolist()
        values += means + ([-x for x in means] if signed else [])
    values += [0.0, 1.0]
    assert len(values) == 2**total_bits
    return torch.tensor(sorted(values), dtype=torch.float32)


def quantize(x: torch.Tensor, code: torch.Tensor, *, block_size: int, keep_sign: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 indices shaped like x, fp32 absmax per block): nearest code entry of x / absmax."""
    flat = x.reshape(-1).float()
    n = flat.numel()
    blocks = torch.nn.functional.pad(flat, (0, (-n) % block_size)).view(-1, block_size)
    absmax = blocks.abs().amax(dim=1)
    scaled = blocks / torch.where(absmax > 0, absmax, torch.ones_like(absmax)).unsqueeze(1)
    index = torch.bucketize(scaled, (code[1:] + code[:-1]) / 2)  # nearest entry, ties to the lower
    if keep_sign:  # never flip the sign of the momentum (bitsandbytes' signbit fix)
        flipped = torch.signbit(code[index]) != torch.signbit(scaled)
        index = torch.where(flipped, index + torch.where(scaled > 0, 1, -1), index).clamp_(0, 255)
    return index.view(-1)[:n].to(torch.uint8).view(x.shape), absmax


def dequantize(index: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, *, block_size: int) -> torch.Tensor:
    n = index.numel()
    values = code[index.reshape(-1).long()]
    blocks = torch.nn.functional.pad(values, (0, (-n) % block_size)).view(-1, block_size)
    return (blocks * absmax.unsqueeze(1)).view(-1)[:n].view(index.shape)


class AdamW8bit(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, block_size: int = 2048, min_8bit_size: int = 4096) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.block_size, self.min_8bit_size = block_size, min_8bit_size
        self.signed_code = dynamic_map(signed=True)
        self.unsigned_code = dynamic_map(signed=False)

    def _init_state(self, p: torch.Tensor) -> None:
        state = self.state[p]
        if p.numel() < self.min_8bit_size:
            state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
            state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
            return
        blocks = -(-p.numel() // self.block_size)
        for i in (1, 2):
            state[f"state{i}"] = torch.zeros_like(p, dtype=torch.uint8)  # absmax 0: every value is 0
            state[f"absmax{i}"] = torch.zeros(blocks, dtype=torch.float32, device=p.device)

    def _moments(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = self.state[p]
        if "exp_avg" in state:
            return state["exp_avg"], state["exp_avg_sq"]
        codes = self._codes(p.device)
        return (dequantize(state["state1"], state["absmax1"], codes[0], block_size=self.block_size),
                dequantize(state["state2"], state["absmax2"], codes[1], block_size=self.block_size))

    def _codes(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.signed_code.device != device:
            self.signed_code, self.unsigned_code = self.signed_code.to(device), self.unsigned_code.to(device)
        return self.signed_code, self.unsigned_code

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if not self.state[p]:
                    self._init_state(p)
            group["step"] = t = group.get("step", 0) + 1
            beta1, beta2 = group["betas"]
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            m, v = map(list, zip(*(self._moments(p) for p in params)))
            grads = [p.grad.float() for p in params]

            torch._foreach_lerp_(m, grads, 1 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, (1 - beta2**t) ** 0.5)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, m, denom, value=-lr / (1 - beta1**t))
            if wd:
                torch._foreach_mul_(params, 1 - lr * wd)

            signed, unsigned = self._codes(params[0].device)
            for p, m_p, v_p in zip(params, m, v):
                state = self.state[p]
                if "state1" in state:  # 8-bit: store the new moments quantized
                    state["state1"], state["absmax1"] = quantize(m_p, signed, block_size=self.block_size, keep_sign=True)
                    state["state2"], state["absmax2"] = quantize(v_p, unsigned, block_size=self.block_size,
                                                                 keep_sign=False)
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        """torch casts every state tensor to the parameter's dtype on load: put the uint8 indices
        and fp32 absmax back as they were saved."""
        super().load_state_dict(state_dict)
        saved_ids = itertools.chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        params = itertools.chain.from_iterable(g["params"] for g in self.param_groups)
        for saved_id, p in zip(saved_ids, params):
            for key, value in state_dict["state"].get(saved_id, {}).items():
                if torch.is_tensor(value) and value.dtype != self.state[p][key].dtype:
                    self.state[p][key] = value.to(device=p.device, copy=True)


def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    return AdamW8bit(param_groups(model, workload, weight_decay=hparams.weight_decay), lr=hparams.learning_rate,
                     betas=(hparams.beta1, hparams.beta2), eps=hparams.eps)


lr_schedule = schedules.lr_schedule("warmup_cosine", warmup="warmup_frac")
