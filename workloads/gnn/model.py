"""The graph network of AlgoPerf's ogbg workload (init2winit's GNN), with scatter ops in plain torch.

A batch is many molecules concatenated into one graph (see `data.py`): `node_graph[i]` and
`edge_graph[j]` say which molecule a node or edge belongs to; padding nodes and edges belong to
one extra graph slot (index `n_graphs`), dropped before the decoder. Each message-passing step
is Algorithm 1 of Battaglia et al. (2018), with the node update aggregating over sent and
received edges separately, as jraph's `GraphNetwork` and AlgoPerf's port do:

    e' = phi_e([e, x_sender, x_receiver, u_graph])
    x' = phi_v([x, sum_{sent} e', sum_{received} e', u_graph])
    u' = phi_u([sum_nodes x', sum_edges e', u])

Each phi is Dense -> LayerNorm -> activation -> Dropout; the logits are a Dense of the final
globals. Inputs are OGB's 9 atom and 3 bond integer features, embedded as floats by a Dense
layer, as AlgoPerf does.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": lambda: nn.GELU(approximate="tanh"), "silu": nn.SiLU}


class GNNConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    num_outputs: int = 128  # binary tasks
    latent_dim: int = 256
    hidden_dims: tuple[int, ...] = (256,)
    num_message_passing_steps: int = 5
    activation: Literal["relu", "gelu", "silu"] = "relu"
    dropout: float = 0.1
    node_features: int = 9  # OGB's smiles2graph atom features
    edge_features: int = 3  # OGB's smiles2graph bond features


# --- scatter ops --------------------------------------------------------------------------

def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """out[k] = sum of src[i] over i with index[i] == k; rows of `out` no index hits are 0."""
    out = src.new_zeros((dim_size, *src.shape[1:]))
    return out.index_add_(0, index, src)



# --- layers -------------------------------------------------------------------------------

def lecun_normal_(linear: nn.Linear) -> None:
    """AlgoPerf's `pytorch_default_init`: truncated LeCun normal weights, zero bias."""
    std = math.sqrt(1.0 / linear.in_features) / 0.87962566103423978
    nn.init.trunc_normal_(linear.weight, std=std, a=-2 * std, b=2 * std)
    nn.init.zeros_(linear.bias)


def mlp(in_dim: int, hidden_dims: tuple[int, ...], activation: str, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for dim in hidden_dims:
        layers += [nn.Linear(in_dim, dim), nn.LayerNorm(dim, eps=1e-6), ACTIVATIONS[activation](),
                   nn.Dropout(dropout)]
        in_dim = dim
    return nn.Sequential(*layers)


class GraphNetworkStep(nn.Module):
    """One message-passing step: edge, node, then global update."""

    def __init__(self, edge_in: int, node_in: int, global_in: int, cfg: GNNConfig) -> None:
        super().__init__()
        self.edge_fn = mlp(edge_in, cfg.hidden_dims, cfg.activation, cfg.dropout)
        self.node_fn = mlp(node_in, cfg.hidden_dims, cfg.activation, cfg.dropout)
        self.global_fn = mlp(global_in, cfg.hidden_dims, cfg.activation, cfg.dropout)

    def forward(self, nodes, edges, globals_, senders, receivers, node_graph, edge_graph):
        n_nodes, n_slots = nodes.shape[0], globals_.shape[0]
        edges = self.edge_fn(torch.cat([edges, nodes[senders], nodes[receivers], globals_[edge_graph]], -1))
        sent = scatter_sum(edges, senders, n_nodes)
        received = scatter_sum(edges, receivers, n_nodes)
        nodes = self.node_fn(torch.cat([nodes, sent, received, globals_[node_graph]], -1))
        pooled_nodes = scatter_sum(nodes, node_graph, n_slots)
        pooled_edges = scatter_sum(edges, edge_graph, n_slots)
        globals_ = self.global_fn(torch.cat([pooled_nodes, pooled_edges, globals_], -1))
        return nodes, edges, globals_


class GNN(nn.Module):
    def __init__(self, cfg: GNNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        latent, hidden = cfg.latent_dim, cfg.hidden_dims[-1]
        self.node_embedder = nn.Linear(cfg.node_features, latent)
        self.edge_embedder = nn.Linear(cfg.edge_features, latent)
        steps = []
        for i in range(cfg.num_message_passing_steps):
            if i == 0:  # the globals start as zeros of size num_outputs (AlgoPerf's model)
                dims = (3 * latent + cfg.num_outputs, latent + 2 * hidden + cfg.num_outputs,
                        2 * hidden + cfg.num_outputs)
            else:
                dims = (4 * hidden, 4 * hidden, 3 * hidden)
            steps.append(GraphNetworkStep(*dims, cfg))
        self.steps = nn.ModuleList(steps)
        self.decoder = nn.Linear(hidden, cfg.num_outputs)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                lecun_normal_(m)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits (n_graphs, num_outputs) for a batch from `data.collate`."""
        n_graphs = batch["targets"].shape[0]
        nodes = self.node_embedder(batch["node_feat"].float())
        edges = self.edge_embedder(batch["edge_feat"].float())
        globals_ = nodes.new_zeros((n_graphs + 1, self.cfg.num_outputs))  # + the padding slot
        graph_index = (batch["senders"], batch["receivers"], batch["node_graph"], batch["edge_graph"])
        for step in self.steps:
            nodes, edges, globals_ = step(nodes, edges, globals_, *graph_index)
        return self.decoder(globals_[:n_graphs])
