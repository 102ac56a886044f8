"""The GNN's parameters and training FLOPs per molecule (algobench/flops.py states the accounting).

Every message-passing step runs its edge MLP once per (directed) edge, its node MLP once per
node and its global MLP once per graph; the embedders act on nodes and edges, the decoder on
graphs. An example is a molecule of ogbg-molpcba's mean size (OGB's dataset table: 26.0 atoms,
28.1 bonds, each bond two directed edges), before the batch's padding.
"""

from __future__ import annotations

from algobench.flops import ModelCost, n_params
from algobench.specs import Preset
from workloads.gnn.model import GNN, GNNConfig

MEAN_NODES, MEAN_EDGES = 26.0, 2 * 28.1  # ogbg-molpcba, per molecule


def forward_flops(cfg: GNNConfig, *, nodes: float, edges: float, graphs: float) -> float:
    latent, hidden, out = cfg.latent_dim, cfg.hidden_dims, cfg.num_outputs
    h = hidden[-1]

    def mlp(in_dim: int) -> int:  # multiply-adds per row
        dims = (in_dim, *hidden)
        return sum(a * b for a, b in zip(dims, dims[1:]))

    per_node, per_edge, per_graph = cfg.node_features * latent, cfg.edge_features * latent, h * out
    for i in range(cfg.num_message_passing_steps):
        if i == 0:
            e_in, n_in, g_in = 3 * latent + out, latent + 2 * h + out, 2 * h + out
        else:
            e_in, n_in, g_in = 4 * h, 4 * h, 3 * h
        per_edge, per_node, per_graph = per_edge + mlp(e_in), per_node + mlp(n_in), per_graph + mlp(g_in)
    return 2 * (nodes * per_node + edges * per_edge + graphs * per_graph)


def cost(preset: Preset) -> ModelCost:
    cfg = preset.config.model
    return ModelCost(n_params=n_params(lambda: GNN(cfg)),
                     train_flops_per_example=3 * forward_flops(cfg, nodes=MEAN_NODES, edges=MEAN_EDGES, graphs=1),
                     example="one molecule of ogbg-molpcba's mean size (26.0 atoms, 56.2 directed edges)")
