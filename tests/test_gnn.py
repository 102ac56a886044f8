"""GNN workload: scatter ops, batching, the masked loss and mAP against OGB's evaluator, the OGB-form
converter on tiny generated files, and training to the smoke target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algobench.errors import UserError
from workloads.gnn import VARIANTS, GnnWorkload, mean_average_precision, smoke
from workloads.gnn import data as gdata
from workloads.gnn import prepare as gprep
from workloads.gnn.model import GNN, GNNConfig, scatter_sum

TINY_SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C1CCCCC1N", "O=C(O)c1ccccc1C(=O)O", "CN", "ClCCl"]


def test_scatter_sum_matches_a_loop():
    rng = np.random.default_rng(0)
    src = torch.from_numpy(rng.normal(size=(50, 3)))
    index = torch.from_numpy(rng.integers(0, 7, size=50))
    out = scatter_sum(src, index, dim_size=9)
    expected = torch.zeros(9, 3, dtype=src.dtype)
    for i, k in enumerate(index.tolist()):
        expected[k] += src[i]
    torch.testing.assert_close(out, expected)
    assert out[7:].abs().sum() == 0  # slots no index hits stay 0


def test_mean_average_precision_is_ogbs_evaluator_to_the_bit():
    """NaN labels, a task with no positive (skipped), tied scores, float32 logits and float64
    scores: the same number as OGB's `Evaluator('ogbg-molpcba')`, exactly."""
    from ogb.graphproppred import Evaluator

    rng = np.random.default_rng(1)
    y_true = (rng.random((300, 128)) < 0.3).astype(np.float64)
    y_true[rng.random(y_true.shape) < 0.4] = np.nan
    y_true[:, 5] = np.where(np.isnan(y_true[:, 5]), np.nan, 0.0)  # no positive: task skipped
    y_true[:, 6] = np.where(np.isnan(y_true[:, 6]), np.nan, 1.0)  # no negative: task skipped
    evaluator = Evaluator("ogbg-molpcba")
    for y_pred in (rng.normal(size=y_true.shape) + np.nan_to_num(y_true),
                   np.round(rng.normal(size=y_true.shape), 1).astype(np.float32),  # many ties
                   (rng.normal(size=y_true.shape) + np.nan_to_num(y_true)).astype(np.float32)):
        assert mean_average_precision(y_true, y_pred) == evaluator.eval({"y_true": y_true, "y_pred": y_pred})["ap"]
    perfect = np.where(np.isnan(y_true), 0.0, y_true)
    assert mean_average_precision(y_true, perfect) == 1.0
    with pytest.raises(ValueError, match="both a positive and a negative"):
        mean_average_precision(np.zeros((4, 3)), np.zeros((4, 3)))


def test_smoke_eval_map_is_ogbs_evaluator_on_the_model_predictions(data_dir):
    """The workload's `map` on its own val predictions equals OGB's evaluator run on them."""
    from ogb.graphproppred import Evaluator

    from algobench.frameworks.torch import TorchBackend
    from tests.helpers import ensure_smoke
    from workloads import WORKLOADS

    spec = WORKLOADS.get("gnn")
    ensure_smoke(spec.name, data_dir)
    w = spec.build_torch(preset=spec.presets["smoke"], size="smoke", data_dir=data_dir,
                         backend=TorchBackend.choose("cpu", "fp32"))
    model = w.build_model().eval()
    with torch.no_grad():
        batches = list(w.eval_batches("val"))
        logits = torch.cat([model(b) for b in batches]).numpy()
    y_true = torch.where(torch.cat([b["mask"] for b in batches]), torch.cat([b["targets"] for b in batches]),
                         torch.nan).numpy()
    evaluator = Evaluator("ogbg-molpcba")
    evaluator.num_tasks = y_true.shape[1]
    assert w.evaluate(model, "val")["map"] == evaluator.eval({"y_true": y_true, "y_pred": logits})["ap"]


def test_padded_size_bounds_padding():
    for n in range(1, 5000, 7):
        m = gdata.padded_size(n)
        assert m >= n and (m - n) <= max(n // 8, 8)
    assert len({gdata.padded_size(n) for n in range(1000, 2000)}) <= 9


@pytest.fixture(scope="module")
def tiny_graphs(tmp_path_factory):
    """A 7-molecule data set written in ogbg-molpcba's layout, converted by the real converter."""
    folder = tmp_path_factory.mktemp("ogb")
    labels = np.array([[1, 0, np.nan], [0, 1, 1], [np.nan, 1, 0], [1, 1, 0], [0, 0, 1], [1, np.nan, 0], [0, 1, 1]],
                      dtype=np.float32)
    splits = {"train": np.array([0, 1, 2, 3]), "val": np.array([4, 5]), "test": np.array([6])}
    gprep.write_ogb_folder(folder / "pcba", TINY_SMILES, labels, ["t0", "t1", "t2"], splits)
    info = gprep.convert(folder / "pcba", folder / "graphs.npz")
    assert info["molecules"] == 7 and info["tasks"] == 3
    return gdata.load_graphs(folder / "graphs.npz")


def test_converter_keeps_smiles2graph_features_labels_and_splits(tiny_graphs):
    from ogb.utils import smiles2graph

    g = tiny_graphs
    for i, s in enumerate(TINY_SMILES):
        ref = smiles2graph(s)
        nodes = g.node_feat[g.node_ptr[i]:g.node_ptr[i + 1]]
        np.testing.assert_array_equal(nodes, ref["node_feat"])
        np.testing.assert_array_equal(g.edge_index[:, g.edge_ptr[i]:g.edge_ptr[i + 1]], ref["edge_index"])
    assert g.labels[0].tolist() == [1, 0, -1] and g.labels[5].tolist() == [1, -1, 0]
    assert g.splits["val"].tolist() == [4, 5] and g.splits["test"].tolist() == [6]


def test_collate_builds_one_padded_graph(tiny_graphs):
    g = tiny_graphs
    idx = np.array([2, 0, 4])
    b = gdata.collate(g, idx, g.node_ptr, g.edge_ptr)
    n_real = int(g.n_nodes[idx].sum())
    e_real = int(g.n_edges[idx].sum())
    assert len(b["node_feat"]) > n_real and (b["node_graph"][n_real:] == 3).all()
    assert (b["edge_graph"][e_real:] == 3).all()
    # every real edge joins two nodes of its own molecule
    assert (b["node_graph"][b["senders"][:e_real]] == b["edge_graph"][:e_real]).all()
    assert (b["node_graph"][b["receivers"][:e_real]] == b["edge_graph"][:e_real]).all()
    np.testing.assert_array_equal(b["mask"], g.labels[idx] >= 0)
    assert b["targets"][2].tolist() == [0, 0, 1]


def test_model_is_invariant_to_molecule_order_and_padding(tiny_graphs):
    g = tiny_graphs
    torch.manual_seed(0)
    model = GNN(GNNConfig(num_outputs=3, latent_dim=16, hidden_dims=(16,), num_message_passing_steps=2)).eval()
    a = gdata.collate(g, np.array([0, 1, 2, 3]), g.node_ptr, g.edge_ptr)
    b = gdata.collate(g, np.array([3, 1, 0, 2]), g.node_ptr, g.edge_ptr)
    out_a = model(gdata.to_device(a, torch.device("cpu")))
    out_b = model(gdata.to_device(b, torch.device("cpu")))
    torch.testing.assert_close(out_a[[3, 1, 0, 2]], out_b, rtol=1e-4, atol=1e-5)


def test_train_stream_is_deterministic_and_ranks_split_the_batch(tiny_graphs):
    cpu = torch.device("cpu")
    first = [b["targets"] for _, b in zip(range(5), gdata.train_stream(tiny_graphs, seed=3, batch_size=2, device=cpu))]
    again = [b["targets"] for _, b in zip(range(5), gdata.train_stream(tiny_graphs, seed=3, batch_size=2, device=cpu))]
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    resumed = next(gdata.train_stream(tiny_graphs, seed=3, batch_size=2, device=cpu, start_step=3))["targets"]
    assert torch.equal(resumed, first[3])
    halves = [next(gdata.train_stream(tiny_graphs, seed=3, batch_size=2, device=cpu, rank=r, world_size=2))["targets"]
              for r in range(2)]
    assert torch.equal(torch.cat(halves), first[0])


def test_loss_ignores_missing_labels():
    wl = GnnWorkload(name="gnn", size="smoke", preset=smoke(), backend=None, data_dir=None)
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([[True, False], [True, True]])
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    out = wl.loss_fn(labels, logits, mask)
    changed = wl.loss_fn(labels, logits + torch.tensor([[0.0, 50.0], [0.0, 0.0]]), mask)  # a missing label's logit
    assert out["n_valid_examples"].item() == 3
    assert out["summed"].item() == pytest.approx(changed["summed"].item())
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[mask], labels[mask], reduction="sum")
    assert out["summed"].item() == pytest.approx(expected.item())


def test_data_prepare_full_converts_an_ogb_folder(tmp_path):
    """`algobench data prepare gnn --size full --source DIR` on a folder in molpcba's layout."""
    from tests.helpers import cli

    labels = np.array([[1, 0], [0, np.nan], [1, 1], [np.nan, 0], [0, 1], [1, 0], [0, 0]], dtype=np.float32)
    splits = {"train": np.arange(5), "val": np.array([5]), "test": np.array([6])}
    gprep.write_ogb_folder(tmp_path / "pcba", TINY_SMILES, labels, ["t0", "t1"], splits)
    result = cli("data", "prepare", "gnn", "--size", "full", "--source", str(tmp_path / "pcba"),
                 "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 0, result.stderr
    assert gprep.is_ready("full", tmp_path / "d")
    graphs = gdata.load_graphs(tmp_path / "d" / "gnn" / "full" / "graphs.npz")
    assert graphs.labels.tolist() == np.nan_to_num(labels, nan=-1).tolist()  # -1: missing
    assert graphs.splits["val"].tolist() == [5] and graphs.splits["test"].tolist() == [6]


def test_prepare_rejects_a_folder_that_is_not_molpcba(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(UserError, match="mapping/mol.csv.gz"):
        gprep.prepare("full", tmp_path / "data", source=tmp_path / "src")
    with pytest.raises(UserError, match="--shards"):
        gprep.prepare("smoke", tmp_path / "data", shards=tmp_path)


def test_scaffold_split_keeps_scaffolds_together():
    scaffolds = ["a"] * 5 + ["b"] * 3 + ["c", "d"]
    split = gprep.scaffold_split(scaffolds)
    assert split["train"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert len(split["val"]) == 1 and len(split["test"]) == 1


def test_variants_change_the_model_and_have_own_targets():
    assert set(VARIANTS) == {"gnn", "gnn_gelu", "gnn_silu", "gnn_model_size"}
    models = {name: smoke(name).config.model for name in VARIANTS}
    assert models["gnn_gelu"].activation == "gelu" and models["gnn_silu"].activation == "silu"
    assert models["gnn_model_size"].hidden_dims != models["gnn"].hidden_dims
    assert len({smoke(name).target.value for name in VARIANTS}) > 1


@pytest.mark.slow
def test_adamw_reaches_the_gnn_smoke_target(data_dir):
    """The AdamW baseline that set the target (its defaults, the default seed) reaches val_map 0.64
    at the preset's eval of step 300, refined to step 228 (README: 0.6235 at 200, 0.7122 at 300);
    steps, not the clock, decide on a loaded machine. The bound leaves one eval of room. Adan's
    slower curve (0.64 at 700-800 steps, ~50 s) is measured in the README, not run here."""
    from algobench.specs import RunOptions, TrialConfig
    from tests.helpers import run

    cfg = TrialConfig(workload="gnn", size="smoke", submission="adamw", seed=0, data_dir=data_dir,
                      options=RunOptions(device="cpu", budget_s=1e6, max_steps=400))
    evals, end = run(cfg)
    assert end.status == "reached", (end.reason, [e.metrics.get("val_map") for e in evals])
    assert end.extra["refined_steps_to_target"] <= 300, end.extra
    assert evals[0].metrics["val_map"] < 0.58  # below the target early on (untrained: ~0.39)
