"""Molecular graphs on disk and in batches.

On disk (`graphs.npz`, written by `prepare.py` at every size): OGB's `smiles2graph` features of
every molecule, concatenated: `node_feat` (total_nodes, 9) and `edge_feat` (total_edges, 3)
uint8, `edge_index` (2, total_edges) int32 node indices local to each molecule (both directions
of every bond, as smiles2graph gives them), `n_nodes` and `n_edges` (n_graphs,) int32,
`labels` (n_graphs, n_tasks) int8 with -1 for a missing label, and `split_train`,
`split_val`, `split_test` index arrays.

A batch concatenates `batch_size` molecules into one graph, built on the host with numpy (no
device sync) and padded to a few fixed sizes (so compiled kernels are reused): padding nodes
and edges belong to an extra graph slot that the model drops. Keys: `node_feat`, `edge_feat`,
`senders`, `receivers`, `node_graph`, `edge_graph`, `targets` (n_graphs, n_tasks) float with
missing labels set to 0, and `mask` (n_graphs, n_tasks) bool, True where a label is present.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Graphs:
    node_feat: np.ndarray
    edge_feat: np.ndarray
    edge_index: np.ndarray
    n_nodes: np.ndarray
    n_edges: np.ndarray
    labels: np.ndarray
    splits: dict[str, np.ndarray]

    @property
    def node_ptr(self) -> np.ndarray:
        return _offsets(self.n_nodes)

    @property
    def edge_ptr(self) -> np.ndarray:
        return _offsets(self.n_edges)


def save_graphs(path: Path, graphs: Graphs) -> None:
    np.savez(path, node_feat=graphs.node_feat, edge_feat=graphs.edge_feat, edge_index=graphs.edge_index,
             n_nodes=graphs.n_nodes, n_edges=graphs.n_edges, labels=graphs.labels,
             **{f"split_{k}": v for k, v in graphs.splits.items()})


def load_graphs(path: Path) -> Graphs:
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    return Graphs(node_feat=arrays["node_feat"], edge_feat=arrays["edge_feat"], edge_index=arrays["edge_index"],
                  n_nodes=arrays["n_nodes"], n_edges=arrays["n_edges"], labels=arrays["labels"],
                  splits={k: arrays[f"split_{k}"] for k in SPLITS})


def _offsets(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The concatenation of arange(s, s + c) for each (s, c), vectorized."""
    total = int(counts.sum())
    shift = np.repeat(starts - _offsets(counts)[:-1], counts)
    return shift + np.arange(total, dtype=np.int64)


def padded_size(n: int) -> int:
    """The smallest m * 2^k >= n with 8 <= m < 16: few distinct shapes, at most 12.5% padding."""
    n = max(n, 8)
    step = 2 ** max(n.bit_length() - 4, 0)
    return -(-n // step) * step


def collate(graphs: Graphs, idx: np.ndarray, node_ptr: np.ndarray, edge_ptr: np.ndarray) -> dict[str, np.ndarray]:
    """Molecules `idx` as one padded graph (numpy arrays; see the module docstring)."""
    n_graphs = len(idx)
    nn, ne = graphs.n_nodes[idx].astype(np.int64), graphs.n_edges[idx].astype(np.int64)
    node_src = _ranges(node_ptr[idx], nn)
    edge_src = _ranges(edge_ptr[idx], ne)
    n_real, e_real = len(node_src), len(edge_src)
    n_pad, e_pad = padded_size(n_real + 1), padded_size(e_real)  # >= 1 padding node for padding edges

    node_graph = np.full(n_pad, n_graphs, dtype=np.int64)
    node_graph[:n_real] = np.repeat(np.arange(n_graphs), nn)
    edge_graph = np.full(e_pad, n_graphs, dtype=np.int64)
    edge_graph[:e_real] = np.repeat(np.arange(n_graphs), ne)
    node_feat = np.zeros((n_pad, graphs.node_feat.shape[1]), dtype=graphs.node_feat.dtype)
    node_feat[:n_real] = graphs.node_feat[node_src]
    edge_feat = np.zeros((e_pad, graphs.edge_feat.shape[1]), dtype=graphs.edge_feat.dtype)
    edge_feat[:e_real] = graphs.edge_feat[edge_src]
    first_node = np.repeat(_offsets(nn)[:-1], ne)  # each edge's molecule's first node in the batch
    senders = np.full(e_pad, n_pad - 1, dtype=np.int64)
    receivers = np.full(e_pad, n_pad - 1, dtype=np.int64)
    senders[:e_real] = graphs.edge_index[0, edge_src] + first_node
    receivers[:e_real] = graphs.edge_index[1, edge_src] + first_node

    labels = graphs.labels[idx]
    return {"node_feat": node_feat, "edge_feat": edge_feat, "senders": senders, "receivers": receivers,
            "node_graph": node_graph, "edge_graph": edge_graph,
            "targets": np.maximum(labels, 0).astype(np.float32), "mask": labels >= 0}


def to_device(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    pin = device.type == "cuda"
    out = {}
    for k, v in batch.items():
        t = torch.from_numpy(v)
        out[k] = (t.pin_memory() if pin else t).to(device, non_blocking=pin)
    return out


def train_stream(graphs: Graphs, *, seed: int, batch_size: int, device: torch.device, rank: int = 0,
                 world_size: int = 1, start_step: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """Infinite shuffled batches of the train split, deterministic from (seed, step): step s takes
    positions [s * batch_size, (s + 1) * batch_size) of a stream of per-epoch permutations; each
    rank takes its contiguous slice of that global batch."""
    train = graphs.splits["train"]
    n = len(train)
    per_rank = batch_size // world_size
    node_ptr, edge_ptr = graphs.node_ptr, graphs.edge_ptr
    perms: dict[int, np.ndarray] = {}

    def epoch_perm(epoch: int) -> np.ndarray:
        if epoch not in perms:
            if len(perms) >= 2:
                perms.pop(min(perms))
            perms[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        return perms[epoch]

    step = start_step
    while True:
        pos = step * batch_size + rank * per_rank + np.arange(per_rank)
        idx = np.empty(per_rank, dtype=np.int64)
        for epoch in np.unique(pos // n):  # a batch spans at most two epochs
            at = pos // n == epoch
            idx[at] = epoch_perm(int(epoch))[pos[at] % n]
        yield to_device(collate(graphs, train[idx], node_ptr, edge_ptr), device)
        step += 1


def eval_batches(graphs: Graphs, split: str, batch_size: int) -> list[dict[str, np.ndarray]]:
    """The whole split in order, in batches of `batch_size` molecules (the last one smaller)."""
    ids = graphs.splits[split]
    node_ptr, edge_ptr = graphs.node_ptr, graphs.edge_ptr
    return [collate(graphs, ids[i:i + batch_size], node_ptr, edge_ptr) for i in range(0, len(ids), batch_size)]
