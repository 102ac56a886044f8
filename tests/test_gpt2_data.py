"""GPT-2 data: the shard format, the batch stream, the smoke set, and the real GPT-2 BPE path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workloads.gpt2 import prepare as prep
from workloads.gpt2.shards import HEADER_INTS, MAGIC, ShardError, TokenStream, eval_windows, read_shard, write_shard


def test_shard_round_trip_in_llm_c_layout(tmp_path):
    tokens = np.arange(1000, dtype=np.uint16) * 50
    write_shard(tmp_path / "x_train_000000.bin", tokens)
    raw = (tmp_path / "x_train_000000.bin").read_bytes()
    header = np.frombuffer(raw[:HEADER_INTS * 4], dtype="<i4")
    assert tuple(header[:3]) == (MAGIC, 1, 1000) and not header[3:].any()
    assert np.array_equal(read_shard(tmp_path / "x_train_000000.bin"), tokens)


def test_bad_shards_are_refused(tmp_path):
    (tmp_path / "junk.bin").write_bytes(b"\0" * 2048)
    with pytest.raises(ShardError, match="bad magic"):
        read_shard(tmp_path / "junk.bin")
    write_shard(tmp_path / "cut.bin", np.arange(100, dtype=np.uint16))
    (tmp_path / "cut.bin").write_bytes((tmp_path / "cut.bin").read_bytes()[:-10])
    with pytest.raises(ShardError, match="file size"):
        read_shard(tmp_path / "cut.bin")
    with pytest.raises(ShardError, match="uint16"):
        write_shard(tmp_path / "big.bin", np.array([70000]))


def test_stream_is_deterministic_and_ranks_split_the_global_batch(tmp_path):
    for i in range(2):
        write_shard(tmp_path / f"t_train_{i:06d}.bin", np.arange(i * 5000, i * 5000 + 3000, dtype=np.uint16))
    stream = TokenStream(sorted(tmp_path.glob("*.bin")), seq_len=16)
    full = stream.batch(seed=3, step=7, batch_size=8)
    assert np.array_equal(full, stream.batch(seed=3, step=7, batch_size=8))
    assert not np.array_equal(full, stream.batch(seed=3, step=8, batch_size=8))
    halves = [stream.batch(seed=3, step=7, batch_size=8, rank=r, world_size=2) for r in range(2)]
    assert np.array_equal(np.concatenate(halves), full)
    assert (np.diff(full, axis=1) == 1).all()  # windows never cross a shard boundary
    batches = stream.batches(seed=3, batch_size=8, device=torch.device("cpu"), start_step=7)
    first = next(batches)
    assert torch.equal(first["inputs"], torch.from_numpy(full[:, :-1]))
    assert torch.equal(first["targets"], torch.from_numpy(full[:, 1:]))


def test_eval_windows_are_consecutive():
    rows = eval_windows(np.arange(100, dtype=np.uint16), seq_len=10, n_tokens=40, offset=5)
    assert rows.shape == (4, 11) and rows[0, 0] == 5 and rows[1, 0] == 15 and rows[-1, -1] == 45


def test_smoke_splits_cover_the_text_without_overlap():
    text = "\n".join(f"Ge{c}:{v} verse {c}-{v} of the text" for c in range(1, 41) for v in range(1, 4))
    docs = prep.chapters(text)
    assert len(docs) == 40 and docs[0].startswith("verse 1-1")
    assert [prep.split_of(i) for i in range(20)].count("val") == 1


def test_smoke_data_is_ready(data_dir):
    info = json.loads((prep.data_dir_for(data_dir, "smoke") / prep.READY).read_text())
    assert info["tokens"]["train"] > 1_000_000 and info["tokens"]["val"] > 16_384
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(prep.data_dir_for(data_dir, "smoke") / "tokenizer.json"))
    assert tok.get_vocab_size() == prep.SMOKE_VOCAB
    val = read_shard(next(prep.data_dir_for(data_dir, "smoke").glob("*val_*.bin")))
    assert "the" in tok.decode(val[:200].tolist())


def test_gpt2_bpe_offline_matches_known_ids(gpt2_bpe_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    enc = prep.gpt2_encoding(gpt2_bpe_dir)
    assert enc.encode_ordinary("Hello world") == [15496, 995]
    assert enc.eot_token == prep.GPT2_EOT_ID


def test_tokenize_documents_writes_val_then_train_shards(gpt2_bpe_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    docs = [f"Document number {i} says hello to the world." for i in range(50)]
    src = tmp_path / "docs.jsonl"
    src.write_text("\n".join(json.dumps({"text": d}) for d in docs))
    enc = prep.gpt2_encoding(gpt2_bpe_dir)
    out = tmp_path / "shards"
    out.mkdir()
    counts = prep.tokenize_documents(prep.iter_text_files(src), out, encoding=enc, val_tokens=100,
                                     shard_tokens=200)
    names = sorted(p.name for p in out.glob("*.bin"))
    assert names[-1] == "fineweb_val_000000.bin" and names[0] == "fineweb_train_000000.bin"
    assert counts["val"] == 100 and counts["train"] == sum(len(enc.encode_ordinary(d)) + 1 for d in docs) - 100
    tokens = np.concatenate([read_shard(out / "fineweb_val_000000.bin")] +
                            [read_shard(p) for p in sorted(out.glob("*train_*.bin"))])
    text = enc.decode(tokens.tolist())
    assert text == "".join("<|endoftext|>" + d for d in docs)


def test_data_prepare_full_from_local_documents(gpt2_bpe_dir, tmp_path, monkeypatch):
    """`algobench data prepare gpt2 --size full --source DIR`: the tokenizing path of `full`."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ALGOBENCH_GPT2_BPE_DIR", str(gpt2_bpe_dir))
    src = tmp_path / "docs"
    src.mkdir()
    (src / "a.txt").write_text("The quick brown fox jumps over the lazy dog. " * 200)
    out = prep.prepare("full", tmp_path / "data", source=src, val_tokens=500)
    assert prep.is_ready("full", tmp_path / "data")
    assert len(read_shard(out / "fineweb_val_000000.bin")) == 500
    linked = prep.prepare("small", tmp_path / "data2", shards=out)
    assert (linked / "fineweb_val_000000.bin").is_symlink() and prep.is_ready("small", tmp_path / "data2")
