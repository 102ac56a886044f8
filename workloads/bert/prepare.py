"""Preparing BERT data: packed, tokenized rows in token shards, one folder per size.

- smoke: the King James Bible (Debian's `bible-kjv`, through the GPT-2 workload's reader) or any
  text file, one chapter a document and one verse a sentence; a 4,096-token WordPiece vocabulary
  trained here on the train chapters; rows of 64 tokens.
- small, full: English Wikipedia (a dump, WikiExtractor's output, or .txt/.jsonl/.parquet
  documents); a 30,522-token uncased WordPiece vocabulary (bert-base-uncased's size) trained
  here on the first documents; rows of 128 tokens.

Rows follow BERT's create_pretraining_data: a document's sentences are packed into chunks of up to
`seq_len - 3` tokens (shorter with probability 0.1), each split at a random sentence boundary into
A and B, written as `[CLS] A [SEP] B [SEP]` and padded; no next-sentence task (RoBERTa). Rows are
stored as the GPT-2 workload's uint16 token shards, `seq_len` tokens each; masks are drawn when
batches are made (dynamic masking), fixed for evaluation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np

from algobench.errors import UserError
from algobench.files import write_json
from workloads.bert import wiki
from workloads.bert.masking import CLS, PAD, SEP, SPECIAL_TOKENS
from workloads.gpt2.prepare import bible_text, chapters, iter_text_files
from workloads.gpt2.shards import write_shard

READY = "READY.json"
TOKENIZER = "tokenizer.json"
SEQ_LEN = {"smoke": 64, "small": 128, "full": 128}
VOCAB = {"smoke": 4096, "small": 30_522, "full": 30_522}
HELD_OUT_EVERY = {"smoke": 20, "small": 1000, "full": 1000}  # 1 document in N to val, another to test
TOKENIZER_DOCS = 200_000  # documents the Wikipedia vocabulary is trained on
SHARD_ROWS = 1 << 20  # rows per train shard (256 MiB at 128 tokens)
SHORT_SEQ_PROB = 0.1


def data_dir_for(data_dir: Path, size: str) -> Path:
    return Path(data_dir) / "bert" / size


def is_ready(size: str, data_dir: Path) -> bool:
    return (data_dir_for(data_dir, size) / READY).is_file()


def split_of(doc_index: int, every: int) -> str:
    """Document 7 of every `every` to val, document 17 (mod every) to test, the rest to train."""
    return {7 % every: "val", 17 % every: "test"}.get(doc_index % every, "train")


# --- sentences and rows ----------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def sentences(document: str) -> list[str]:
    """A document's sentences: its lines, each split after . ! or ? before a capital."""
    return [s for line in document.splitlines() for s in _SENTENCE_END.split(line.strip()) if s]


def pack_document(sents: list[list[int]], *, seq_len: int, rng: np.random.Generator,
                  short_seq_prob: float = SHORT_SEQ_PROB) -> list[np.ndarray]:
    """Rows `[CLS] A [SEP] B [SEP] [PAD]...` (seq_len each) from one document's tokenized
    sentences, as BERT's create_instances_from_document without the random next segment."""
    max_tokens = seq_len - 3
    rows: list[np.ndarray] = []

    def target_len() -> int:
        return int(rng.integers(2, max_tokens + 1)) if rng.random() < short_seq_prob else max_tokens

    chunk: list[list[int]] = []
    length, target = 0, target_len()
    for i, sent in enumerate(sents):
        if sent:
            chunk.append(sent)
            length += len(sent)
        if chunk and (i == len(sents) - 1 or length >= target):
            a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
            a = [t for s in chunk[:a_end] for t in s]
            b = [t for s in chunk[a_end:] for t in s]
            while len(a) + len(b) > max_tokens:  # trim the longer side, at its front or back
                longer = a if len(a) > len(b) else b
                del longer[0 if rng.random() < 0.5 else -1]
            row = [CLS, *a, SEP, *([*b, SEP] if b else [])]
            rows.append(np.array(row + [PAD] * (seq_len - len(row)), dtype=np.uint16))
            chunk, length, target = [], 0, target_len()
    return rows


# --- the WordPiece vocabulary ----------------------------------------------------------------

def train_wordpiece(texts: Callable[[], Iterable[str]], vocab_size: int):
    """An uncased WordPiece tokenizer (BERT's normaliser and pre-tokenizer) trained on the texts
    `texts()` yields; the special tokens get ids 0..4 (masking.SPECIAL_TOKENS).

    The same texts give the same vocabulary in every process: `tokenizers`' trainer (0.23) creates
    the continuing-subword tokens ("##e") in the order of a hash map that is seeded anew in each
    process, and breaks ties between merges of equal count by token id, so the vocabulary (and a
    smoke trial's curve) changed from one `data prepare` to the next (huggingface/tokenizers#1794).
    A first pass over the texts finds their characters, and every "##" + character is registered,
    in sorted order, before training; the tokenizer is then rebuilt from the vocabulary with only
    the real special tokens."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    def bert_tokenizer(vocab: dict[str, int] | None = None) -> Tokenizer:
        tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]") if vocab else models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        return tok

    tok = bert_tokenizer()
    chars: set[str] = set()
    for text in texts():
        chars.update(tok.normalizer.normalize_str(text))
    continuing = ["##" + c for c in sorted(chars) if not c.isspace()]
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS) + continuing,
                                        show_progress=False)
    tok.train_from_iterator(texts(), trainer=trainer)
    tok = bert_tokenizer(tok.get_vocab())
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    return tok


# --- documents -> shards ---------------------------------------------------------------------

class RowWriter:
    """Rows of one split, written as token shards of up to `shard_rows` rows."""

    def __init__(self, out: Path, split: str, seq_len: int, shard_rows: int = SHARD_ROWS) -> None:
        self.out, self.split, self.seq_len, self.shard_rows = out, split, seq_len, shard_rows
        self.rows: list[np.ndarray] = []
        self.index = self.count = 0

    def add(self, rows: list[np.ndarray]) -> None:
        self.rows += rows
        while len(self.rows) >= self.shard_rows:
            self._flush(self.shard_rows)

    def _flush(self, n: int) -> None:
        write_shard(self.out / f"bert_{self.split}_{self.index:06d}.bin", np.concatenate(self.rows[:n]))
        self.rows = self.rows[n:]
        self.index += 1
        self.count += n

    def close(self) -> int:
        if self.rows:
            self._flush(len(self.rows))
        return self.count


def write_rows(docs: Iterable[str], out: Path, tok, *, seq_len: int, every: int, seed: int = 0,
               batch_docs: int = 512, shard_rows: int = SHARD_ROWS, on_docs=None) -> dict[str, int]:
    """Tokenize and pack `docs` into shards of train, val and test rows; row counts per split."""
    rng = np.random.default_rng(seed)
    writers = {split: RowWriter(out, split, seq_len, shard_rows) for split in ("train", "val", "test")}
    index = 0
    for batch in _batched(docs, batch_docs):
        per_doc = [sentences(d) for d in batch]
        encoded = tok.encode_batch([s for doc in per_doc for s in doc], add_special_tokens=False)
        start = 0
        for sents in per_doc:
            ids = [e.ids for e in encoded[start:start + len(sents)]]
            start += len(sents)
            writers[split_of(index, every)].add(pack_document(ids, seq_len=seq_len, rng=rng))
            index += 1
        if on_docs is not None:
            on_docs(len(batch))
    return {split: w.close() for split, w in writers.items()}


def _batched(items: Iterable[str], n: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def wikipedia_documents(source: Path) -> Iterator[str]:
    """Documents of a dump file, of WikiExtractor's output folder, or of .txt/.jsonl/.parquet files."""
    source = Path(source)
    if source.is_file() and (source.name.endswith(".xml") or source.name.endswith(".xml.bz2")):
        return wiki.dump_articles(source)
    if source.is_dir() and wiki.is_extracted(source):
        return wiki.extracted_articles(source)
    return iter_text_files(source)


def prepare(size: str, data_dir: Path, *, source: Path | None = None, shards: Path | None = None) -> Path:
    """Build `<data_dir>/bert/<size>/` (see the module's docstring for the sources)."""
    if shards is not None:
        raise UserError("--shards is for GPT-2 token shards; bert reads --source (text or a Wikipedia dump)")
    out = data_dir_for(data_dir, size)
    out.mkdir(parents=True, exist_ok=True)
    (out / READY).unlink(missing_ok=True)
    for old in out.glob("bert_*.bin"):
        old.unlink()
    if size == "smoke":
        text = Path(source).read_text() if source else bible_text()
        docs = chapters(text)
        if sum(split_of(i, HELD_OUT_EVERY[size]) != "train" for i in range(len(docs))) < 2:
            raise UserError("the smoke text is too short: need at least 20 chapters or 800 lines")
        info = _tokenize_and_pack(lambda: docs, out, size=size)
        origin = str(source) if source else "bible-kjv"
    else:
        if source is None:
            raise UserError(f"bert {size} reads English Wikipedia: download {wiki.DUMP_URL} (about 22 GB), then "
                            f"algobench data prepare bert --size {size} --source FILE")
        if not Path(source).exists():
            raise UserError(f"--source {source} does not exist")
        info = _tokenize_and_pack(lambda: wikipedia_documents(Path(source)), out, size=size)
        origin = str(source)
    write_json(out / READY, {"source": origin, **info})
    return out


def _tokenize_and_pack(make_docs: Callable[[], Iterable[str]], out: Path, *, size: str) -> dict:
    """Three passes over the documents: the vocabulary's two over the train documents among the
    first TOKENIZER_DOCS (their characters, then training), then every document is tokenized and
    packed."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    every = HELD_OUT_EVERY[size]
    with Progress(SpinnerColumn(), TextColumn("{task.description}: {task.completed:,.0f} documents"),
                  TimeElapsedColumn(), transient=True) as progress:
        task = progress.add_task("bert: training the vocabulary (2 passes)", total=None)

        def vocab_docs() -> Iterator[str]:
            docs = (d for i, d in enumerate(islice(make_docs(), TOKENIZER_DOCS)) if split_of(i, every) == "train")
            return _counted(docs, lambda: progress.advance(task))

        tok = train_wordpiece(vocab_docs, VOCAB[size])
        task = progress.add_task("bert: tokenizing and packing", total=None)
        counts = write_rows(make_docs(), out, tok, seq_len=SEQ_LEN[size], every=every,
                            on_docs=lambda n: progress.advance(task, n))
    tok.save(str(out / TOKENIZER))
    if not all(counts.values()):
        raise UserError(f"too little text: rows per split {counts}")
    return {"tokenizer": f"uncased WordPiece, {tok.get_vocab_size()} tokens", "vocab_size": tok.get_vocab_size(),
            "seq_len": SEQ_LEN[size], "rows": counts}


def _counted(items: Iterable[str], tick: Callable[[], None]) -> Iterator[str]:
    for item in items:
        tick()
        yield item
