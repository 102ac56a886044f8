"""Praat TextGrid files (the Montreal Forced Aligner's output) and phone durations in mel frames.

Both of Praat's text formats are read: the long one (`xmin = 0`, `intervals [1]:` ...) and the
short one (values only), in UTF-8 or UTF-16. Stripped of labels and bracketed indices, both are
the same stream of values: file type, object class, xmin, xmax, <exists>, tier count, then per
tier its class, name, xmin, xmax, count and (xmin, xmax, text) per interval or (time, mark) per
point. Written files use the long format with MFA's tiers, `words` and `phones`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SILENCE = "sp"  # the token for pauses and leading/trailing silence
SILENCE_LABELS = {"", "sil", "sp", "<eps>", "silence"}  # MFA 1 writes sil/sp, MFA 2 empty intervals
_TOKEN = re.compile(r'"(?:[^"]|"")*"|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|<exists>|<absent>')
_INDEX = re.compile(r"\[\s*\d*\s*\]")


class TextGridError(ValueError):
    pass


@dataclass(frozen=True)
class Interval:
    start_s: float
    end_s: float
    label: str


def parse_textgrid(text: str) -> dict[str, list[Interval]]:
    """Interval tiers by name (point tiers are skipped)."""
    tokens = _TOKEN.findall(_INDEX.sub(" ", text))
    pos = 0

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise TextGridError("TextGrid ends early")
        pos += 1
        return tokens[pos - 1]

    def string() -> str:
        tok = take()
        if not tok.startswith('"'):
            raise TextGridError(f"expected a quoted string, got {tok!r}")
        return tok[1:-1].replace('""', '"')

    def number() -> float:
        tok = take()
        try:
            return float(tok)
        except ValueError:
            raise TextGridError(f"expected a number, got {tok!r}") from None

    if string() != "ooTextFile" or string() != "TextGrid":
        raise TextGridError("not a TextGrid (expected File type = \"ooTextFile\", Object class = \"TextGrid\")")
    number(), number()  # xmin, xmax of the whole grid
    if take() != "<exists>":
        return {}
    tiers: dict[str, list[Interval]] = {}
    for _ in range(int(number())):
        kind, name = string(), string()
        number(), number()
        count = int(number())
        if kind == "IntervalTier":
            tiers[name] = [Interval(number(), number(), string()) for _ in range(count)]
        elif kind == "TextTier":
            for _ in range(count):
                number(), string()
        else:
            raise TextGridError(f"unknown tier class {kind!r}")
    return tiers


def read_textgrid(path: Path) -> dict[str, list[Interval]]:
    raw = Path(path).read_bytes()
    text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8-sig")
    try:
        return parse_textgrid(text)
    except TextGridError as err:
        raise TextGridError(f"{path}: {err}") from None


def write_textgrid(tiers: dict[str, list[Interval]], xmax_s: float) -> str:
    """Interval tiers in Praat's long text format."""
    def quoted(s: str) -> str:
        return '"' + s.replace('"', '""') + '"'

    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {xmax_s:.6f}",
             "tiers? <exists>", f"size = {len(tiers)}", "item []:"]
    for i, (name, intervals) in enumerate(tiers.items(), 1):
        lines += [f"    item [{i}]:", '        class = "IntervalTier"', f"        name = {quoted(name)}",
                  "        xmin = 0", f"        xmax = {xmax_s:.6f}", f"        intervals: size = {len(intervals)}"]
        for j, iv in enumerate(intervals, 1):
            lines += [f"        intervals [{j}]:", f"            xmin = {iv.start_s:.6f}",
                      f"            xmax = {iv.end_s:.6f}", f"            text = {quoted(iv.label)}"]
    return "\n".join(lines) + "\n"


def phone_durations(intervals: list[Interval], *, n_frames: int, sample_rate_hz: int,
                    hop_samples: int) -> tuple[list[str], np.ndarray]:
    """Phone labels and their durations in mel frames, summing exactly to `n_frames`.

    Boundaries go to the nearest frame (FastSpeech 2's rounding); silences become `SILENCE`
    tokens (consecutive ones merged; a gap before the first interval is one too) and the last
    interval ends at the last frame."""
    labels: list[str] = []
    bounds: list[int] = []
    for iv in sorted(intervals, key=lambda iv: iv.start_s):
        label = SILENCE if iv.label.strip().lower() in SILENCE_LABELS else iv.label.strip()
        start = round(iv.start_s * sample_rate_hz / hop_samples)
        if not labels and start > 0:
            labels.append(SILENCE)
            bounds.append(0)
        if labels and label == SILENCE and labels[-1] == SILENCE:
            continue
        labels.append(label)
        bounds.append(max(start, 0) if bounds else 0)
    if not labels:
        raise TextGridError("no intervals")
    end = round(max(iv.end_s for iv in intervals) * sample_rate_hz / hop_samples)
    if abs(end - n_frames) > 2:
        raise TextGridError(f"the alignment covers {end} frames, the audio {n_frames}: not the same clip?")
    durations = np.diff(np.array([*bounds, n_frames]))
    if (durations < 0).any():
        raise TextGridError("intervals overlap or run past the end of the audio")
    return labels, durations.astype(np.int64)
