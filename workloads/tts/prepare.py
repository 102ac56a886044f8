"""Preparing TTS data: an LJSpeech-format corpus with phone alignments, then features per split.

Every size goes through the same two stages:
1. a corpus in LJSpeech's format (`metadata.csv` with `id|text|normalized text`, `wavs/ID.wav`,
   22,050 Hz 16-bit mono) and one MFA-style TextGrid per clip (`phones` tier):
   - smoke, small: synthesized here with espeak-ng from King James Bible sentences (Debian's
     `bible-kjv`, or `--source FILE`), the TextGrids from espeak-ng's own phoneme events;
   - full: LJSpeech 1.1 as the user has it (`--source LJSpeech-1.1`), with the TextGrids the
     Montreal Forced Aligner wrote for it (searched for under the corpus folder).
2. features (`features.py`): log-mel frames, phone ids, durations in frames, phone-level
   pitch and energy, in `data/tts/<size>/`.
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np

from algobench.errors import UserError
from algobench.files import atomic_write, write_json
from workloads.gpt2.prepare import bible_text, chapters, split_of
from workloads.tts import audio
from workloads.tts import features as feats
from workloads.tts.espeak import Speech, espeak
from workloads.tts.textgrid import Interval, write_textgrid

READY = "READY.json"
SPLITS = ("train", "val", "test")
# utterances per split and words per utterance of the synthesized sizes
SYNTH = {
    "smoke": {"train": 384, "val": 48, "test": 48, "min_words": 3, "max_words": 8, "clauses": True},
    "small": {"train": 4_000, "val": 200, "test": 200, "min_words": 6, "max_words": 25, "clauses": False},
}
# FastSpeech 2's split of LJSpeech: LJ003 validates, LJ001 and LJ002 test, the rest trains
LJSPEECH_SPLIT = {"LJ001": "test", "LJ002": "test", "LJ003": "val"}


def data_dir_for(data_dir: Path, size: str) -> Path:
    return Path(data_dir) / "tts" / size


def is_ready(size: str, data_dir: Path) -> bool:
    return (data_dir_for(data_dir, size) / READY).is_file()


def prepare(size: str, data_dir: Path, *, source: Path | None = None, alignments: Path | None = None,
            shards: Path | None = None, voice: str = "en-us") -> Path:
    """Build data/tts/<size>/. smoke/small: synthesize the corpus (from `source`, a text file,
    or Debian's bible-kjv); full: `source` is an LJSpeech-format folder and `alignments` (default:
    the corpus folder itself) holds its MFA TextGrids."""
    if shards is not None:
        raise UserError("tts data come from an LJSpeech-format folder (--source), not token shards")
    out = data_dir_for(data_dir, size)
    if size in SYNTH:  # inputs are checked before anything prepared is touched
        texts = utterance_texts(size, source)
    else:
        if source is None:
            raise UserError("tts full needs LJSpeech 1.1 and its MFA alignments: algobench data prepare tts "
                            "--size full --source LJSpeech-1.1 (TextGrid files anywhere under that folder)")
        corpus = Path(source)
        ids = [row[0] for row in read_metadata(corpus)]
        grids = find_textgrids(Path(alignments) if alignments else corpus)
    out.mkdir(parents=True, exist_ok=True)
    (out / READY).unlink(missing_ok=True)
    if size in SYNTH:
        corpus = out / "corpus"
        splits = synthesize_corpus(texts, corpus, voice=voice, progress=size != "smoke")
        grids = {p.stem: p for p in (corpus / "TextGrid").glob("*.TextGrid")}
        info = {"source": str(source) if source else "bible-kjv", "synthesizer": f"espeak-ng ({voice})"}
    else:
        splits = {split: [i for i in ids if LJSPEECH_SPLIT.get(i[:5], "train") == split and i in grids]
                  for split in SPLITS}
        info = {"source": str(corpus), "alignments": str(alignments or corpus),
                "clips_without_alignment": sum(i not in grids for i in ids)}
    info.update(feats.build(corpus, grids, splits, out, progress=size != "smoke"))
    write_json(out / READY, info)
    return out


# --- the synthesized corpus ------------------------------------------------------------------

def utterance_texts(size: str, source: Path | None) -> dict[str, list[str]]:
    """Sentences per split: chapters go to splits as gpt2's do (every 20th to val, another to
    test); verses (or, for smoke, their clauses) of the size's length, evenly spread over the text."""
    spec = SYNTH[size]
    text = Path(source).read_text() if source else bible_text()
    candidates: dict[str, list[str]] = {s: [] for s in SPLITS}
    for i, chapter in enumerate(chapters(text)):
        for verse in chapter.splitlines():
            pieces = re.findall(r"[^,;:.?!]+[,;:.?!]*", verse) if spec["clauses"] else [verse]
            for piece in pieces:
                piece = piece.strip()
                if spec["min_words"] <= len(piece.split()) <= spec["max_words"] and re.search(r"[A-Za-z]", piece):
                    candidates[split_of(i)].append(piece)
    texts = {}
    for split in SPLITS:
        found, want = candidates[split], spec[split]
        if len(found) < want:
            raise UserError(f"the tts {size} text is too short: {len(found)} {split} utterances of "
                            f"{spec['min_words']}-{spec['max_words']} words, {want} needed")
        texts[split] = [found[j] for j in np.linspace(0, len(found) - 1, want).round().astype(int)]
    return texts


def synthesize_corpus(texts: dict[str, list[str]], corpus: Path, *, voice: str = "en-us",
                      progress: bool = False) -> dict[str, list[str]]:
    """Write an LJSpeech-format corpus of `texts` spoken by espeak-ng, with a TextGrid per clip
    from the synthesizer's phoneme events. Returns the clip ids per split."""
    tts = espeak(voice)
    shutil.rmtree(corpus, ignore_errors=True)  # no clips left from an earlier build
    for folder in ("wavs", "TextGrid"):
        (corpus / folder).mkdir(parents=True, exist_ok=True)
    rows, splits = [], {}
    with feats.progress_bar(sum(map(len, texts.values())), progress, "espeak-ng") as advance:
        for split, lines in texts.items():
            splits[split] = []
            for line in lines:
                clip = f"KJV-{len(rows) + 1:05d}"
                speech = tts.synthesize(line)
                # plain writes: an interrupted build leaves no READY.json and is started over
                (corpus / "wavs" / f"{clip}.wav").write_bytes(audio.wav_bytes(speech.samples, speech.sample_rate_hz))
                (corpus / "TextGrid" / f"{clip}.TextGrid").write_text(write_textgrid(
                    speech_tiers(speech), len(speech.samples) / speech.sample_rate_hz))
                rows.append(f"{clip}|{line}|{line}")
                splits[split].append(clip)
                advance()
    atomic_write(corpus / "metadata.csv", ("\n".join(rows) + "\n").encode())
    return splits


def speech_tiers(speech: Speech) -> dict[str, list[Interval]]:
    """MFA's `words` and `phones` tiers from espeak-ng's phoneme events: a phone lasts until the
    next one starts, pauses are empty intervals, zero-length phones are dropped."""
    sr, total = speech.sample_rate_hz, len(speech.samples)
    phones: list[tuple[int, int, str, int]] = []  # start, end (samples), label, word index
    starts = [p.start_sample for p in speech.phones]
    for p, end in zip(speech.phones, [*starts[1:], total]):
        if end <= p.start_sample:
            continue
        if phones and phones[-1][2] == "" and p.name == "":
            phones[-1] = (phones[-1][0], end, "", -1)
        else:
            phones.append((p.start_sample, end, p.name, p.word if p.name else -1))
    if not phones or phones[0][0] > 0:
        phones.insert(0, (0, phones[0][0] if phones else total, "", -1))
    words: list[tuple[int, int, str]] = []
    for start, end, _, w in phones:
        if w >= 0 and words and words[-1][2] == w:
            words[-1] = (words[-1][0], end, w)
        elif w >= 0:
            words.append((start, end, w))
    word_tier, t = [], 0
    for start, end, w in words:
        if start > t:
            word_tier.append(Interval(t / sr, start / sr, ""))
        word_tier.append(Interval(start / sr, end / sr, speech.words[w]))
        t = end
    if t < total:
        word_tier.append(Interval(t / sr, total / sr, ""))
    return {"words": word_tier, "phones": [Interval(s / sr, e / sr, label) for s, e, label, _ in phones]}


# --- a user's LJSpeech -----------------------------------------------------------------------

def read_metadata(corpus: Path) -> list[list[str]]:
    """LJSpeech's metadata.csv rows: id, text, normalized text (`|`-separated, no quoting)."""
    path = corpus / "metadata.csv"
    if not path.is_file() or not (corpus / "wavs").is_dir():
        raise UserError(f"{corpus} is not an LJSpeech-format folder (metadata.csv and wavs/ expected)")
    with open(path, encoding="utf-8", newline="") as f:
        return [row for row in csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE) if row]


def find_textgrids(folder: Path) -> dict[str, Path]:
    """Clip id -> TextGrid file, from anywhere under `folder` (MFA nests them by speaker)."""
    grids = {p.stem: p for p in sorted(folder.rglob("*.TextGrid"))}
    if not grids:
        raise UserError(f"no .TextGrid files under {folder}: align the corpus with the Montreal Forced "
                        "Aligner (mfa align) and put its output folder there, or pass its folder as alignments")
    return grids
