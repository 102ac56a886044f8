"""Model sizes and FLOPs: each workload's analytic training FLOPs against torch's FLOP counter
on its smoke model, every full model's parameter count against its published reference, the
peak table and MFU, and the FLOPs fields of a smoke run's summary.json."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from algobench import flops
from algobench.layout import read_summary
from algobench.specs import RunOptions, TrialConfig
from algobench.trial import execute
from tests.helpers import ensure_smoke
from workloads import WORKLOADS

B = 2  # examples per counted step


# --- the analytic count against torch's counter, on every smoke model --------------------------

def _gpt2(cfg):
    from workloads.gpt2.cost import forward_flops
    from workloads.gpt2.model import GPT

    m = cfg.model
    idx = torch.randint(0, m.vocab_size, (B, m.block_size))
    return GPT(m), lambda model: model(idx), B * forward_flops(m, m.block_size)


def _vit(cfg):
    from workloads.vit.cost import forward_flops
    from workloads.vit.model import ViT

    m = cfg.model
    images = torch.randn(B, m.channels, m.image_size, m.image_size)
    return ViT(m), lambda model: model(images), B * forward_flops(m)


def _bert(cfg):
    from workloads.bert.cost import forward_flops
    from workloads.bert.model import Bert

    m = cfg.model
    tokens = torch.randint(5, m.vocab_size, (B, cfg.seq_len))
    positions = torch.randint(0, cfg.seq_len, (B, cfg.max_predictions))
    return (Bert(m), lambda model: model(tokens, torch.zeros_like(tokens), positions),
            B * forward_flops(m, cfg.seq_len, cfg.max_predictions))


def _gnn(cfg):
    from workloads.gnn.cost import forward_flops
    from workloads.gnn.model import GNN

    m, nodes, edges, graphs = cfg.model, 60, 130, 4
    batch = {"node_feat": torch.randint(0, 5, (nodes, m.node_features)),
             "edge_feat": torch.randint(0, 3, (edges, m.edge_features)),
             "senders": torch.randint(0, nodes, (edges,)), "receivers": torch.randint(0, nodes, (edges,)),
             "node_graph": torch.arange(nodes) * graphs // nodes, "edge_graph": torch.arange(edges) * graphs // edges,
             "targets": torch.zeros(graphs, m.num_outputs)}
    # the globals run over the graphs and the padding slot; the decoder over the graphs only
    expected = forward_flops(m, nodes=nodes, edges=edges, graphs=graphs + 1) - 2 * m.hidden_dims[-1] * m.num_outputs
    return GNN(m), lambda model: model(batch), expected


def _tts(cfg):
    from workloads.tts.cost import forward_flops
    from workloads.tts.model import FastSpeech2

    m, phones, frames = cfg.model, 30, 150
    ids = torch.randint(1, 40, (B, phones))
    durations = torch.full((B, phones), frames // phones)
    model = FastSpeech2(m, n_symbols=40, pitch_range=(-1.0, 1.0), energy_range=(-1.0, 1.0))

    def run(model):
        return model(ids, durations=durations, pitch=torch.randn(B, phones), energy=torch.randn(B, phones))
    return model, run, B * forward_flops(m, phones=phones, frames=frames)


def _detr(cfg):
    from workloads.detr.cost import forward_flops
    from workloads.detr.model import DETR

    m, side = cfg.model, cfg.data.eval_scale
    images = torch.randn(B, 3, side, side)
    return DETR(m), lambda model: model(images), B * forward_flops(m, side, side, train=True)


BUILDERS = {"gpt2": _gpt2, "vit": _vit, "bert": _bert, "gnn": _gnn, "tts": _tts, "detr": _detr}


def _scalar(out) -> torch.Tensor:
    if isinstance(out, dict):
        return sum(v.float().sum() for v in out.values() if torch.is_tensor(v) and v.is_floating_point())
    return out.float().sum()


@pytest.mark.parametrize("name", WORKLOADS.names())
def test_analytic_train_flops_match_torchs_counter_on_the_smoke_model(name):
    spec = WORKLOADS.get(name)
    assert spec.cost is not None, f"{name} declares no cost"
    torch.manual_seed(0)
    model, forward, expected_forward = BUILDERS[name.split("_")[0]](spec.presets["smoke"].config)
    model.train()
    # the math kernel: its matmuls are what the counter sees (it knows no CPU kernel with a mask)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        _scalar(forward(model)).backward()
    counted = counter.get_total_flops()
    assert counted == pytest.approx(3 * expected_forward, rel=0.10), (counted, 3 * expected_forward)
    cost = spec.cost(spec.presets["smoke"])
    assert cost.n_params == sum(p.numel() for p in model.parameters()) or name.startswith("tts")  # tts: symbols


# --- full models against their references --------------------------------------------------

def _full_params(name: str) -> int:
    spec = WORKLOADS.get(name)
    return spec.cost(spec.presets["full"]).n_params


def test_gpt2_full_is_gpt2_124m():
    """GPT-2 small with its 50,257-token vocabulary: 124,439,808 (tied embeddings, 1,024
    positions, biases), as Hugging Face's `gpt2` checkpoint; the preset pads the vocabulary to
    50,304 (a multiple of 64, nanoGPT's speed-up): 36,096 more."""
    from workloads.gpt2.model import GPT

    cfg = WORKLOADS.get("gpt2").presets["full"].config.model
    assert _full_params("gpt2") == 124_475_904
    assert flops.n_params(lambda: GPT(cfg.model_copy(update={"vocab_size": 50_257}))) == 124_439_808
    per_sequence = WORKLOADS.get("gpt2").cost(WORKLOADS.get("gpt2").presets["full"]).train_flops_per_example
    assert 8.5e11 < per_sequence < 8.9e11  # 6N per token + attention: ~8.75e11 per 1,024 tokens


def test_gnn_full_is_algoperfs_ogbg_model():
    """AlgoPerf's ogbg_pytorch/models.py: node and edge embedders (9 and 3 -> 256), five graph
    network steps whose edge, node and global MLPs (Dense + LayerNorm) take the in_dims its
    comments derive, and a 256 -> 128 decoder."""
    latent, hidden, out = 256, 256, 128

    def dense_ln(n_in: int) -> int:
        return n_in * hidden + hidden + 2 * hidden

    total = (9 + 1) * latent + (3 + 1) * latent + hidden * out + out
    total += dense_ln(3 * latent + out) + dense_ln(latent + 2 * hidden + out) + dense_ln(2 * hidden + out)
    total += 4 * (dense_ln(4 * hidden) + dense_ln(4 * hidden) + dense_ln(3 * hidden))
    assert _full_params("gnn") == total == 3_554_176


# (workload, reference count, where it comes from)
REFERENCES = [
    ("vit", 22_050_664, "timm vit_small_patch16_224 (class token, learned positions; ours: GAP, sin-cos, pre-logits)"),
    ("bert", 109_482_240, "Hugging Face bert-base-uncased BertModel (512 positions, pooler; ours: 128, MLM head)"),
    ("detr", 41_302_368, "facebookresearch/detr main.py's 'number of params' for DETR-R50 (trainable ones)"),
    ("tts", 24_315_000, "FastSpeech 2 at the paper's sizes as reported in espnet/espnet#2019 (24.315M; "
                        "the paper says 27M)"),
]


@pytest.mark.parametrize(("name", "reference", "source"), REFERENCES)
def test_full_model_is_within_one_percent_of_its_reference(name, reference, source):
    assert _full_params(name) == pytest.approx(reference, rel=0.01), source


@pytest.mark.parametrize("name", WORKLOADS.names())
def test_a_model_on_meta_has_the_cpu_models_parameters_and_skips_their_init(name, data_dir):
    """`on_meta`: the same parameter names and shapes as a CPU build, none holding memory, and no
    initialiser run (each would run torch's Python reference on a tensor without values). A mode
    pushed first sits under on_meta's own and sees every call on_meta lets through."""
    from torch.overrides import TorchFunctionMode

    from algobench.frameworks.torch import TorchBackend

    class Seen(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.names: list[str] = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.names.append(f"{getattr(func, '__module__', '')}.{getattr(func, '__name__', func)}")
            return func(*args, **(kwargs or {}))

    spec = WORKLOADS.get(name)
    ensure_smoke(spec.name, data_dir)  # bert's vocabulary and tts's feature stats size their models
    workload = spec.build_torch(preset=spec.presets["smoke"], size="smoke", data_dir=data_dir,
                                backend=TorchBackend.choose("cpu", "fp32", "off"))
    cpu = {n: p.shape for n, p in workload.build_model().named_parameters()}
    with Seen() as seen:
        meta = flops.on_meta(workload.build_model)
    assert {n: p.shape for n, p in meta.named_parameters()} == cpu
    assert all(p.is_meta for p in meta.parameters())
    inits = [n for n in seen.names if n.startswith("torch.nn.init.") or n.endswith(("normal_", "uniform_"))]
    assert seen.names and not inits, inits[:5]


def test_workload_costs_gives_every_size():
    costs = flops.workload_costs(WORKLOADS.get("gpt2"))
    assert set(costs) == {"smoke", "small", "full"}
    assert costs["full"]["n_params"] == 124_475_904 and costs["full"]["example"] == "one sequence of 1,024 tokens"


# --- peaks, MFU, and the summary ------------------------------------------------------------

@pytest.mark.parametrize(("device_name", "model"), [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H200", "H200"),
    ("NVIDIA H200 NVL", "H200 NVL"), ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA A100 80GB PCIe", "A100"),
    ("Tesla V100-SXM2-32GB", "V100 SXM2"), ("Tesla V100-PCIE-16GB", "V100 PCIe"), ("NVIDIA L40S", "L40S"),
    ("NVIDIA GeForce RTX 4090", None), (None, None)])
def test_device_names_map_to_the_peak_table(device_name, model):
    assert flops.gpu_model(device_name) == model


def test_mfu_is_achieved_over_peak_and_none_without_a_peak():
    out = flops.trial_flops(train_flops_per_example=1e9, batch_size=100, steps=50, submission_time_s=10.0,
                            device_name="NVIDIA H100 80GB HBM3", precision="bf16", n_devices=2)
    assert out["train_flops_per_step"] == 1e11 and out["achieved_flops_per_s"] == 5e11
    assert out["mfu"] == pytest.approx(5e11 / (2 * 989.5e12))
    assert flops.trial_flops(train_flops_per_example=1e9, batch_size=1, steps=1, submission_time_s=1.0,
                             device_name=None, precision="fp32")["mfu"] is None
    assert flops.peak_flops("Tesla V100-SXM2-32GB", "bf16") is None  # no bf16 tensor cores
    assert flops.matmul_precision("fp32", "cpu") == "fp32" and flops.matmul_precision("bf16", "cuda") == "bf16"


def test_a_smoke_runs_summary_has_its_flops(data_dir, tmp_path):
    cfg = TrialConfig(workload="gpt2", size="smoke", submission="adamw", seed=0, data_dir=data_dir,
                      options=RunOptions(device="cpu", max_steps=3, eval_period_steps=3, budget_s=100_000))
    execute(cfg, trial_dir=tmp_path / "trial")
    summary = read_summary(tmp_path / "trial")
    assert not isinstance(summary, str), summary
    per_example = WORKLOADS.get("gpt2").cost(WORKLOADS.get("gpt2").presets["smoke"]).train_flops_per_example
    assert summary.train_flops_per_step == per_example * 16  # the smoke batch
    assert summary.achieved_flops_per_s == pytest.approx(3 * summary.train_flops_per_step / summary.submission_time_s)
    assert summary.mfu is None  # a CPU has no entry in the peak table
