"""Tiny data sets in the real formats the small and full presets read, written here from the
formats' own descriptions (not with the workloads' writers, so a misread format is caught):

- FineWeb token shards (llm.c / modded-nanogpt): 256 int32 header (magic 20240520, version 1,
  token count), then uint16 tokens; `fineweb_train_*.bin`, `fineweb_val_*.bin`.
- ImageNet: `train/<wnid>/*.JPEG`, `val/<wnid>/*.JPEG`.
- COCO 2017: `annotations/instances_{train,val}2017.json` + `train2017/`, `val2017/` JPEGs.
- LJSpeech 1.1: `metadata.csv` (id|text|normalized), `wavs/*.wav` (22,050 Hz, 16-bit mono) and
  MFA TextGrids (Praat long format, `words` and `phones` tiers) under `TextGrid/`.
- ogbg-molpcba: `mapping/mol.csv.gz` (128 task columns, mol_id, smiles) and
  `split/scaffold/{train,valid,test}.csv.gz` (row numbers, one per line).
- Wikipedia: a `pages-articles` XML dump, bz2-compressed.

Every writer takes a folder and returns what `algobench data prepare --source` is given.
"""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import json
import shutil
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

RNG = np.random.default_rng(20260601)


# --- FineWeb token shards ---------------------------------------------------------------------

def fineweb_shards(folder: Path, *, train_tokens: int = 40_000, val_tokens: int = 8_000,
                   vocab: int = 50_257) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("fineweb_val_000000.bin", val_tokens), ("fineweb_train_000001.bin", train_tokens)):
        header = np.zeros(256, dtype="<i4")
        header[:3] = (20240520, 1, n)
        tokens = RNG.integers(0, vocab, size=n).astype("<u2")
        (folder / name).write_bytes(header.tobytes() + tokens.tobytes())
    return folder


# --- ImageNet class folders -----------------------------------------------------------------

WNIDS = ("n01440764", "n01443537", "n01484850")


def _jpeg(path: Path, size: tuple[int, int], seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)


def imagenet_folders(root: Path, *, per_class: int = 4) -> Path:
    """Noise JPEGs of ImageNet's typical 4:3 shape (decoding noise is slower than photos)."""
    for c, wnid in enumerate(WNIDS):
        for i in range(per_class):
            _jpeg(root / "train" / wnid / f"{wnid}_{i}.JPEG", (320 + 16 * (i % 8), 256 + 8 * c), seed=100 * c + i)
        _jpeg(root / "val" / wnid / f"ILSVRC2012_val_{c + 1:08d}.JPEG", (300, 260), seed=1000 + c)
    return root


# --- COCO 2017 ---------------------------------------------------------------------------------

COCO_CATEGORY_IDS = tuple(i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))

def coco_2017(root: Path, *, train_images: int = 4, val_images: int = 2, width: int = 160, height: int = 120) -> Path:
    """COCO's images are ~640 x 480: pass that size to time a loader."""
    # COCO's 80 category ids (1-90 with gaps), all listed as instances JSON lists them
    categories = [{"id": i, "name": f"category {i}", "supercategory": "thing"} for i in COCO_CATEGORY_IDS]
    used = [categories[k] for k in (0, 2, 16)]  # person, car, dog
    for split, n in (("train2017", train_images), ("val2017", val_images)):
        images, annotations = [], []
        for i in range(n):
            image_id = 1000 * (split == "val2017") + i + 1
            w, h = width + 16 * (i % 4), height
            _jpeg(root / split / f"{image_id:012d}.jpg", (w, h), seed=image_id)
            images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": w, "height": h})
            for k in range(1 + i % 3):
                x, y, bw, bh = 10.0 + 20 * k, 15.0 + 5 * k, 40.0, 30.0
                annotations.append({"id": len(annotations) + 1 + 10_000 * (split == "val2017"), "image_id": image_id,
                                    "category_id": used[k]["id"], "bbox": [x, y, bw, bh], "area": bw * bh,
                                    "iscrowd": 0, "segmentation": []})
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"info": {}, "licenses": [], "images": images, "annotations": annotations, "categories": categories}))
    return root


# --- LJSpeech 1.1 with MFA TextGrids -----------------------------------------------------------

PHONES = ("DH", "AH0", "K", "AE1", "T", "S", "AE1", "T", "AA1", "N", "DH", "AH0", "M", "AE1", "T")
SAMPLE_RATE = 22_050


def _textgrid(phones: list[tuple[float, float, str]], words: list[tuple[float, float, str]], end_s: float) -> str:
    def tier(name: str, intervals: list[tuple[float, float, str]]) -> list[str]:
        lines = ['        class = "IntervalTier"', f'        name = "{name}"', "        xmin = 0",
                 f"        xmax = {end_s}", f"        intervals: size = {len(intervals)}"]
        for j, (a, b, text) in enumerate(intervals, 1):
            lines += [f"        intervals [{j}]:", f"            xmin = {a}", f"            xmax = {b}",
                      f'            text = "{text}"']
        return lines

    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {end_s}",
             "tiers? <exists>", "size = 2", "item []:", "    item [1]:", *tier("words", words),
             "    item [2]:", *tier("phones", phones)]
    return "\n".join(lines) + "\n"


def _speechlike(n_phones: int, phone_s: float, seed: int) -> np.ndarray:
    """Voiced phones (harmonics of a gliding 100-220 Hz pitch) and a few unvoiced ones (noise)."""
    rng = np.random.default_rng(seed)
    parts = []
    for p in range(n_phones):
        t = np.arange(int(phone_s * SAMPLE_RATE)) / SAMPLE_RATE
        if p % 5 == 2:
            parts.append(0.05 * rng.standard_normal(len(t)))
        else:
            f0 = 100 + 120 * rng.random()
            parts.append(sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6)))
    wav = np.concatenate([np.zeros(int(0.1 * SAMPLE_RATE)), *parts, np.zeros(int(0.1 * SAMPLE_RATE))])
    return (np.clip(wav, -1, 1) * 20_000).astype("<i2")


def ljspeech(root: Path, *, train_clips: int = 8) -> Path:
    """LJ001 is LJSpeech's test chapter, LJ003 its val chapter (FastSpeech 2's split); train: the rest."""
    clips = ("LJ001-0001", "LJ003-0001", *(f"LJ{4 + i // 50:03d}-{1 + i % 50:04d}" for i in range(train_clips)))
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    (root / "TextGrid" / "LJSpeech").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, clip in enumerate(clips):
        n, phone_s = 8 + i % 5, 0.08
        pcm = _speechlike(n, phone_s, seed=i)
        with wave.open(str(root / "wavs" / f"{clip}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(pcm.tobytes())
        end_s = len(pcm) / SAMPLE_RATE
        t = [0.1 + k * phone_s for k in range(n + 1)]
        phones = [(0.0, 0.1, ""), *((t[k], t[k + 1], PHONES[k % len(PHONES)]) for k in range(n)), (t[n], end_s, "")]
        words = [(0.0, 0.1, ""), (0.1, t[n], "that"), (t[n], end_s, "")]
        (root / "TextGrid" / "LJSpeech" / f"{clip}.TextGrid").write_text(_textgrid(phones, words, end_s))
        rows.append(f"{clip}|That cat sat on the mat {i}.|That cat sat on the mat {i}.")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


# --- ogbg-molpcba ----------------------------------------------------------------------------

SMILES = ("CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C1CCCCC1N", "O=C(O)c1ccccc1C(=O)O", "CN", "ClCCl",
          "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "c1ccncc1", "OCC(O)CO", "CCN(CC)CC", "C=CC#N")


def molpcba(root: Path, *, molecules: int = 12, tasks: int = 128) -> Path:
    (root / "mapping").mkdir(parents=True, exist_ok=True)
    (root / "split" / "scaffold").mkdir(parents=True, exist_ok=True)
    names = [f"PCBA-{1030 + t}" for t in range(tasks)]
    lines = [",".join([*names, "mol_id", "smiles"])]
    for i in range(molecules):
        smiles = SMILES[i % len(SMILES)]
        labels = ["" if RNG.random() < 0.3 else str(int(RNG.random() < 0.4)) for _ in range(tasks)]
        lines.append(",".join([*labels, f"mol{i}", smiles]))
    with gzip.open(root / "mapping" / "mol.csv.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    n_eval = max(2, molecules // 6)
    splits = {"train": range(0, molecules - 2 * n_eval), "valid": range(molecules - 2 * n_eval, molecules - n_eval),
              "test": range(molecules - n_eval, molecules)}
    for name, rows in splits.items():
        with gzip.open(root / "split" / "scaffold" / f"{name}.csv.gz", "wt") as f:
            f.write("".join(f"{r}\n" for r in rows))
    return root


# --- a Wikipedia dump ----------------------------------------------------------------------

def wikipedia_dump(path: Path, *, articles: int = 60) -> Path:
    def page(i: int) -> str:
        words = " ".join(f"word{(i * 7 + j) % 90}" for j in range(60))
        body = (f"'''Topic {i}''' is a [[subject|thing]] about {words}. It was described in {1900 + i}."
                f"{{{{cite web|url=x}}}}\n\n== History ==\nA second paragraph about {words} follows for {i}.")
        return (f"<page><title>Topic {i}</title><ns>0</ns><id>{i + 1}</id><revision><id>{i + 100}</id>"
                f'<text bytes="{len(body)}" xml:space="preserve">{body}</text></revision></page>')

    xml = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">'
           "<siteinfo><sitename>Wikipedia</sitename></siteinfo>" + "".join(page(i) for i in range(articles))
           + "</mediawiki>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bz2.compress(xml.encode()))
    return path


# --- a workload's data, prepared by `data prepare`'s code from the sources above -----------------

def prepare(name: str, size: str, root: Path, *, examples: int = 8) -> Path:
    """`algobench data prepare <name> --size <size> --source <generated>` with at least
    `examples` training examples; returns the data folder. tts small synthesizes 4,000 clips with
    espeak-ng into the LJSpeech layout and then builds the features as full does: here the
    generated LJSpeech stands in for the synthesized corpus (prepared as full, then copied)."""
    from workloads import WORKLOADS

    spec, data_dir = WORKLOADS.get(name), root / "data"
    if name == "gpt2":
        spec.data.prepare(size, data_dir, shards=fineweb_shards(root / "fineweb10B"))
    elif name == "vit":
        spec.data.prepare(size, data_dir, source=imagenet_folders(root / "imagenet", per_class=-(-examples // 3) + 1),
                          workers=1)
    elif name == "bert":
        spec.data.prepare(size, data_dir, source=wikipedia_dump(root / "enwiki-pages-articles.xml.bz2",
                                                                articles=max(60, 2 * examples)))
    elif name == "gnn":
        spec.data.prepare(size, data_dir, source=molpcba(root / "pcba", molecules=max(12, 2 * examples)))
    elif name == "detr":
        spec.data.prepare(size, data_dir, source=coco_2017(root / "coco", train_images=max(4, examples)))
    elif name == "tts":
        spec.data.prepare("full", data_dir, source=ljspeech(root / "LJSpeech-1.1", train_clips=max(8, 4 * examples)))
        if size == "small":
            shutil.copytree(data_dir / "tts" / "full", data_dir / "tts" / "small")
    else:
        raise KeyError(f"no real-format generator for {name}")
    assert spec.data.is_ready(size, data_dir)
    return data_dir


def small_eval(name: str, config):
    """The preset's config with an evaluation the tiny data can hold (a few examples, batches of
    1-2) and 2 loader workers; the model is untouched."""
    base = name.split("_")[0]
    if base == "gpt2":
        return config.model_copy(update={"eval_tokens": config.model.block_size, "eval_batch_size": 1})
    if base == "vit":
        return config.model_copy(update={"eval_examples": 3, "eval_batch_size": 2, "loader_workers": 2})
    if base == "bert":
        return config.model_copy(update={"eval_rows": 4, "eval_batch_size": 2})
    if base in ("gnn", "tts"):
        return config.model_copy(update={"eval_batch_size": 2})
    if base == "detr":
        return config.model_copy(update={"data": config.data.model_copy(update={"eval_batch_size": 1,
                                                                               "loader_workers": 2})})
    raise KeyError(name)


@contextlib.contextmanager
def tiny_eval(name: str, size: str) -> Iterator[Any]:
    """While open, the registry's `name` has `small_eval`'s config at `size`; yields that spec."""
    from workloads import WORKLOADS

    spec = WORKLOADS.get(name)
    preset = spec.presets[size]
    patched = dataclasses.replace(spec, presets={**spec.presets, size: preset.model_copy(
        update={"config": small_eval(name, preset.config)})})
    get = WORKLOADS.get
    WORKLOADS.get = lambda n: patched if n == name else get(n)
    try:
        yield patched
    finally:
        del WORKLOADS.get  # back to the class's method
