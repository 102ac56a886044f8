"""BERT's masked-LM inputs (Devlin et al. 2019), vectorised over a batch of packed rows.

A row is `[CLS] A [SEP] B [SEP] [PAD]...` (B may be absent). Of its maskable tokens (everything
but [PAD], [CLS] and [SEP]) max(1, round(15%)) are chosen, at most `max_predictions`; of those
80% become [MASK], 10% a random token and 10% stay as they are. The model predicts the original
token at each chosen position: `positions`, `targets` and `weights` (0 for the padding slots
past a row's count) are BERT's masked_lm_positions / _ids / _weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4, in this order
PAD, UNK, CLS, SEP, MASK = range(len(SPECIAL_TOKENS))


@dataclass(frozen=True)
class Masked:
    inputs: np.ndarray  # (B, T) int64, the corrupted tokens
    segments: np.ndarray  # (B, T) int64, 0 for [CLS] A [SEP], 1 for B [SEP]
    positions: np.ndarray  # (B, P) int64
    targets: np.ndarray  # (B, P) int64, the original tokens
    weights: np.ndarray  # (B, P) float32, 1 for a real prediction


def segment_ids(rows: np.ndarray) -> np.ndarray:
    """0 up to and including the first [SEP], 1 after it; 0 on padding."""
    sep = rows == SEP
    after_first = (np.cumsum(sep, axis=1) - sep) >= 1
    return (after_first & (rows != PAD)).astype(np.int64)


def mask_rows(rows: np.ndarray, rng: np.random.Generator, *, vocab_size: int, max_predictions: int,
              mask_prob: float = 0.15) -> Masked:
    """Choose and corrupt the masked-LM positions of `rows` (B, T), drawing from `rng`.
    Random replacements are uniform over the non-special tokens [5, vocab_size)."""
    rows = np.asarray(rows, dtype=np.int64)
    B, T = rows.shape
    maskable = (rows != PAD) & (rows != CLS) & (rows != SEP)
    n_pred = np.minimum(max_predictions, np.maximum(1, np.rint(maskable.sum(1) * mask_prob))).astype(np.int64)
    n_pred[maskable.sum(1) == 0] = 0
    scores = np.where(maskable, rng.random((B, T)), np.inf)  # a random order of the maskable tokens
    P = min(max_predictions, T)
    chosen = np.argsort(scores, axis=1, kind="stable")[:, :P]  # the first P of that order
    valid = np.arange(P)[None, :] < n_pred[:, None]
    positions = np.sort(np.where(valid, chosen, T), axis=1)  # ascending, unused slots (T) last
    valid = positions < T
    positions = np.where(valid, positions, 0)

    row_idx = np.arange(B)[:, None]
    targets = np.where(valid, rows[row_idx, positions], 0)
    action = rng.random((B, P))
    random_tokens = rng.integers(len(SPECIAL_TOKENS), vocab_size, size=(B, P))
    replacement = np.where(action < 0.8, MASK, np.where(action < 0.9, random_tokens, targets))
    inputs = rows.copy()
    r, c = np.nonzero(valid)
    inputs[r, positions[r, c]] = replacement[r, c]
    if P < max_predictions:  # rows shorter than max_predictions: pad the prediction slots
        pad = max_predictions - P
        positions, targets = np.pad(positions, ((0, 0), (0, pad))), np.pad(targets, ((0, 0), (0, pad)))
        valid = np.pad(valid, ((0, 0), (0, pad)))
    return Masked(inputs=inputs, segments=segment_ids(rows), positions=positions, targets=targets,
                  weights=valid.astype(np.float32))
