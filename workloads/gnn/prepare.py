"""Preparing molecule data in ogbg-molpcba's form, then featurizing it with OGB's `smiles2graph`.

Every size goes through one converter: a folder laid out like OGB's molpcba download
(`mapping/mol.csv.gz`: one column per binary task, empty = missing, then `mol_id` and `smiles`;
`split/scaffold/{train,valid,test}.csv.gz`: row numbers, no header) becomes `graphs.npz`
(see `data.py`).

- full, small: ogbg-molpcba itself (437,929 molecules, 128 PubChem assays, ~ 2/3 of the labels
  missing), from `--source DIR` (an unzipped `pcba` folder) or downloaded with OGB's own
  download helper from the URL in OGB's master.csv.
- smoke: the ~15k unique valid molecules shipped inside the rdkit wheel (NCI's first 5,000 and the
  WEHI PAINS test set), labelled with the 128 most balanced of the 166 MACCS structural keys
  (computed from the structure: a learnable stand-in for assay outcomes, not bioactivity), ~30%
  of labels hidden as missing, and a Bemis-Murcko scaffold split 80/10/10 as OGB makes it.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from algobench.errors import UserError
from algobench.files import write_json
from workloads.gnn.data import SPLITS, Graphs, save_graphs

READY = "READY.json"
SMOKE_TASKS = 128
SMOKE_MISSING_FRAC = 0.3
SPLIT_FILES = {"train": "train", "val": "valid", "test": "test"}  # ours -> OGB's file names


def data_dir_for(data_dir: Path, size: str) -> Path:
    return Path(data_dir) / "gnn" / size


def is_ready(size: str, data_dir: Path) -> bool:
    return (data_dir_for(data_dir, size) / READY).is_file()


def prepare(size: str, data_dir: Path, *, source: Path | None = None, **unsupported) -> Path:
    """Build data/gnn/<size>/graphs.npz. smoke: from the molecules in the rdkit wheel; small and
    full: ogbg-molpcba from `source` (an unzipped OGB `pcba` folder) or downloaded."""
    if unsupported:
        raise UserError(f"data prepare gnn does not take --{next(iter(unsupported))}; it takes --source DIR "
                        "(an unzipped ogbg-molpcba 'pcba' folder)")
    out = data_dir_for(data_dir, size)
    out.mkdir(parents=True, exist_ok=True)
    (out / READY).unlink(missing_ok=True)
    if source is None:
        source = write_smoke_source(out / "ogb") if size == "smoke" else download_molpcba(Path(data_dir) / "gnn" / "raw")
    info = convert(Path(source), out / "graphs.npz")
    write_json(out / READY, {"source": str(source), **info})
    return out


# --- the converter: OGB's molpcba form -> graphs.npz ------------------------------------------

def read_ogb_folder(folder: Path) -> tuple[list[str], np.ndarray, dict[str, np.ndarray], list[str]]:
    """(smiles, labels as float with NaN for missing, split row numbers, task names)."""
    mol_csv = folder / "mapping" / "mol.csv.gz"
    split_dir = folder / "split" / "scaffold"
    missing = [p for p in [mol_csv, *(split_dir / f"{f}.csv.gz" for f in SPLIT_FILES.values())] if not p.is_file()]
    if missing:
        raise UserError(f"{folder} is not an ogbg-molpcba folder: missing {missing[0].relative_to(folder)} "
                        "(expected mapping/mol.csv.gz and split/scaffold/{train,valid,test}.csv.gz)")
    table = pd.read_csv(mol_csv)
    if "smiles" not in table.columns:
        raise UserError(f"{mol_csv} has no 'smiles' column")
    tasks = [c for c in table.columns if c not in ("smiles", "mol_id")]
    labels = table[tasks].to_numpy(dtype=np.float32)
    splits = {ours: pd.read_csv(split_dir / f"{theirs}.csv.gz", header=None)[0].to_numpy(dtype=np.int64)
              for ours, theirs in SPLIT_FILES.items()}
    return table["smiles"].tolist(), labels, splits, tasks


def featurize(smiles: list[str]) -> dict[str, np.ndarray]:
    """OGB's `smiles2graph` on every molecule (in parallel over the cores), concatenated."""
    graphs = _parallel_map(_smiles2graph_chunk, smiles, "smiles2graph")
    return {"node_feat": np.concatenate([g["node_feat"] for g in graphs]).astype(np.uint8),
            "edge_feat": np.concatenate([g["edge_feat"].reshape(-1, 3) for g in graphs]).astype(np.uint8),
            "edge_index": np.concatenate([g["edge_index"].reshape(2, -1) for g in graphs], axis=1).astype(np.int32),
            "n_nodes": np.array([g["num_nodes"] for g in graphs], dtype=np.int32),
            "n_edges": np.array([g["edge_index"].shape[1] for g in graphs], dtype=np.int32)}


def _smiles2graph_chunk(smiles: list[str]) -> list[dict]:
    from ogb.utils import smiles2graph

    return [smiles2graph(s) for s in smiles]


def _parallel_map(fn, items: list, description: str, chunk: int = 2000) -> list:
    """fn over chunks of `items` in worker processes, results flattened in order, with progress."""
    from concurrent.futures import ProcessPoolExecutor

    from rich.progress import track

    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    workers = min(len(chunks), os.cpu_count() or 1)
    if workers <= 1:
        return [r for c in chunks for r in fn(c)]
    with ProcessPoolExecutor(workers) as pool:
        done = track(pool.map(fn, chunks), total=len(chunks), description=description,
                     disable=len(items) < 100_000)
        return [r for results in done for r in results]


def convert(folder: Path, out_file: Path) -> dict:
    smiles, labels, splits, tasks = read_ogb_folder(folder)
    features = featurize(smiles)
    int_labels = np.where(np.isnan(labels), -1, labels).astype(np.int8)
    graphs = Graphs(**features, labels=int_labels, splits=splits)
    tmp = out_file.with_name(out_file.stem + ".tmp.npz")
    save_graphs(tmp, graphs)
    os.replace(tmp, out_file)
    return {"molecules": len(smiles), "tasks": len(tasks), "missing_label_frac": float(np.isnan(labels).mean()),
            "split_sizes": {k: len(v) for k, v in splits.items()}}


# --- full: the OGB download -------------------------------------------------------------------

def download_molpcba(raw_dir: Path) -> Path:
    """Download and unzip ogbg-molpcba with OGB's own helpers (on a user's machine)."""
    import ogb.graphproppred
    from ogb.utils.url import download_url, extract_zip

    master = pd.read_csv(Path(ogb.graphproppred.__file__).parent / "master.csv", index_col=0)
    info = master["ogbg-molpcba"]
    folder = raw_dir / info["download_name"]
    if not (folder / "mapping" / "mol.csv.gz").is_file():
        raw_dir.mkdir(parents=True, exist_ok=True)
        zip_path = download_url(info["url"], str(raw_dir))
        extract_zip(zip_path, str(raw_dir))
        os.unlink(zip_path)
    return folder


# --- smoke: molecules from the rdkit wheel, MACCS-key labels, scaffold split ----------------

def smoke_molecules() -> tuple[list[str], np.ndarray, list[str]]:
    """The valid molecules in rdkit's NCI and WEHI test files, deduplicated by canonical SMILES:
    (SMILES, MACCS keys (n, 167) uint8, Bemis-Murcko scaffold SMILES)."""
    from rdkit import RDConfig

    root = Path(RDConfig.RDDataDir)
    raw = [line.split()[0] for line in (root / "NCI" / "first_5K.smi").read_text().splitlines() if line.strip()]
    raw += pd.read_csv(root / "Pains" / "test_data" / "wehi_mols.csv", header=None)[0].tolist()
    seen, smiles, keys, scaffolds = set(), [], [], []
    for described in _parallel_map(_describe_chunk, raw, "MACCS keys"):
        if described is not None and described[0] not in seen:
            seen.add(described[0])
            smiles.append(described[0])
            keys.append(described[1])
            scaffolds.append(described[2])
    return smiles, np.frombuffer("".join(keys).encode(), dtype=np.uint8).reshape(len(keys), -1) - ord("0"), scaffolds


def _describe_chunk(smiles: list[str]) -> list[tuple[str, str, str] | None]:
    """(canonical SMILES, MACCS bit string, scaffold) of each molecule; None if invalid or < 2 atoms."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import MACCSkeys
    from rdkit.Chem.Scaffolds import MurckoScaffold

    RDLogger.DisableLog("rdApp.*")
    out = []
    for s in smiles:
        mol = Chem.MolFromSmiles(s)
        if mol is None or mol.GetNumAtoms() < 2:
            out.append(None)
            continue
        out.append((Chem.MolToSmiles(mol), MACCSkeys.GenMACCSKeys(mol).ToBitString(),
                    MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=True)))
    return out


def maccs_labels(keys: np.ndarray, n_tasks: int, missing_frac: float, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """The `n_tasks` MACCS keys whose frequency is nearest 1/2 (in key order), as float labels
    with a random `missing_frac` of them set to NaN."""
    chosen = np.sort(np.argsort(np.abs(keys.mean(0) - 0.5), kind="stable")[:n_tasks])
    labels = keys[:, chosen].astype(np.float32)
    labels[np.random.default_rng(seed).random(labels.shape) < missing_frac] = np.nan
    return labels, [f"MACCS-{k}" for k in chosen]


def scaffold_split(scaffolds: list[str], fractions: tuple[float, float] = (0.8, 0.1)) -> dict[str, np.ndarray]:
    """Bemis-Murcko scaffold split as OGB and MoleculeNet make it: molecules grouped by scaffold,
    largest group first, fill train to 80%, then val to 90%, the rest to test."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, scaffold in enumerate(scaffolds):
        groups[scaffold].append(i)
    ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0]))
    n = len(scaffolds)
    cut_train, cut_val = fractions[0] * n, (fractions[0] + fractions[1]) * n
    out: dict[str, list[int]] = {split: [] for split in SPLITS}
    for group in ordered:
        if len(out["train"]) + len(group) <= cut_train:
            out["train"] += group
        elif len(out["train"]) + len(out["val"]) + len(group) <= cut_val:
            out["val"] += group
        else:
            out["test"] += group
    return {k: np.array(sorted(v), dtype=np.int64) for k, v in out.items()}


def write_ogb_folder(folder: Path, smiles: list[str], labels: np.ndarray, tasks: list[str],
                     splits: dict[str, np.ndarray]) -> Path:
    """Write molecules in the layout of OGB's molpcba download."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "mapping").mkdir(parents=True)
    (folder / "split" / "scaffold").mkdir(parents=True)
    table = pd.DataFrame(labels, columns=tasks)
    table["mol_id"] = [f"mol{i}" for i in range(len(smiles))]
    table["smiles"] = smiles
    # gzip level 1: the smoke table is written once and read once; level 9 (the default) took 4 s of 5
    table.to_csv(folder / "mapping" / "mol.csv.gz", index=False, compression={"method": "gzip", "compresslevel": 1})
    for ours, theirs in SPLIT_FILES.items():
        with gzip.open(folder / "split" / "scaffold" / f"{theirs}.csv.gz", "wt") as f:
            f.write("".join(f"{i}\n" for i in splits[ours]))
    return folder


def write_smoke_source(folder: Path) -> Path:
    smiles, keys, scaffolds = smoke_molecules()
    labels, tasks = maccs_labels(keys, SMOKE_TASKS, SMOKE_MISSING_FRAC)
    return write_ogb_folder(folder, smiles, labels, tasks, scaffold_split(scaffolds))
