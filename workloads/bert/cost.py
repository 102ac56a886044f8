"""BERT's parameters and training FLOPs per row (algobench/flops.py states the accounting).

Per token and layer: projections 4 d^2, MLP 2 d m, attention 4 T d forward FLOPs; the masked-LM
head (dense d^2, decoder d V) runs only at the row's `max_predictions` masked positions.
"""

from __future__ import annotations

from algobench.flops import ModelCost, n_params
from algobench.specs import Preset
from workloads.bert.model import Bert, BertConfig


def forward_flops(cfg: BertConfig, seq_len: int, predictions: int) -> float:
    enc = cfg.encoder
    d, m = enc.width, enc.mlp_dim
    layer = 2 * seq_len * (4 * d * d + 2 * d * m) + 4 * seq_len * seq_len * d
    return enc.depth * layer + 2 * predictions * (d * d + d * cfg.vocab_size)


def cost(preset: Preset) -> ModelCost:
    s = preset.config
    return ModelCost(n_params=n_params(lambda: Bert(s.model)),
                     train_flops_per_example=3 * forward_flops(s.model, s.seq_len, s.max_predictions),
                     example=f"one row of {s.seq_len} tokens, {s.max_predictions} masked")
