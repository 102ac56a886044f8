"""TTS: FastSpeech 2 text-to-mel on LJSpeech-format data; target on validation mel L1.

Training is teacher-forced (ground-truth durations, pitch and energy), with FastSpeech 2's
losses: mel L1 (the `tts_mse` variant: MSE, as some reference implementations train), and MSE
on log(1 + duration), pitch and energy.
Evaluation is deterministic: ground-truth durations, the model's own pitch and energy; the
metric is the mean absolute error of the log-mel frames (`val_mel_l1`), with the variance
predictors' errors beside it. Both variants share the data in `<data_dir>/tts/<size>/`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict

from algobench.specs import Preset, Target
from algobench.frameworks.torch import Batch, TorchWorkload
from algobench.workload import DataSpec, WorkloadSpec
from workloads.tts import data
from workloads.tts import cost as analytic_cost
from workloads.tts import prepare as prep
from workloads.tts.features import load_stats, load_symbols
from workloads.tts.model import FastSpeech2, FastSpeech2Config
from workloads import WORKLOADS


class TtsSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model: FastSpeech2Config
    mel_loss: Literal["l1", "mse"] = "l1"
    length_groups: int = 4  # batches drawn together and sorted by length
    pad_multiple: int = 1  # phones and frames padded to a multiple of this (GPU: fewer recompiles)
    eval_batch_size: int = 64


@dataclass(frozen=True)
class Variant:
    """One registered workload: a loss flag and its own targets (val_mel_l1)."""

    name: str
    description: str
    mel_loss: Literal["l1", "mse"]
    smoke_target: float
    smoke_how: str
    small_target: float
    full_target: float

    @property
    def loss_type(self) -> str:
        """AlgoPerf's name for the mel loss, what `update_params` receives as `loss_type`."""
        return {"l1": "mean_absolute_error", "mse": "mean_squared_error"}[self.mel_loss]


VARIANTS = (
    Variant("tts", "FastSpeech 2 text-to-mel, mel L1 loss (LJSpeech; smoke: espeak-ng speech)", "l1",
            smoke_target=0.54,
            smoke_how="AdamW baseline (submissions/adamw.py defaults, seed 1) on CPU: val_mel_l1 0.54 after "
                      "500 steps (seed 2: 475; NAdamW 500, Adan 450), ~20 s on 2 idle cores (estimated); "
                      "budget 120 s",
            small_target=0.40, full_target=0.45),
    Variant("tts_mse", "FastSpeech 2 with an MSE mel loss instead of the paper's L1 (same metric)", "mse",
            smoke_target=0.54,
            smoke_how="AdamW baseline (submissions/adamw.py defaults, seed 1) on CPU: val_mel_l1 0.54 after "
                      "450 steps, ~18 s on 2 idle cores (estimated); budget 120 s",
            small_target=0.40, full_target=0.45),
)


# --- presets: one code path, three sizes -----------------------------------------------------

def smoke(variant: Variant = VARIANTS[0]) -> Preset:
    model = FastSpeech2Config(width=64, n_heads=2, encoder_layers=2, decoder_layers=2, conv_filters=128,
                              variance_filters=64, n_bins=64)
    return Preset(
        target=Target(metric="val_mel_l1", value=variant.smoke_target, mode="min"),
        budget_s=120, eval_period_s=3, eval_period_steps=25, step_hint=1500, batch_size=16, log_every_steps=10,
        how_target_was_set=variant.smoke_how,
        config=TtsSettings(model=model, mel_loss=variant.mel_loss, eval_batch_size=48),
    )


def small(variant: Variant = VARIANTS[0]) -> Preset:
    return Preset(
        target=Target(metric="val_mel_l1", value=variant.small_target, mode="min"),
        budget_s=3600, eval_period_s=120, step_hint=20_000, batch_size=48, log_every_steps=50,
        how_target_was_set="provisional: FastSpeech 2 (paper sizes) on 4,000 espeak-ng clips (~5 h), batch 48; "
                           "not yet calibrated on a GPU (see README)",
        config=TtsSettings(model=FastSpeech2Config(), mel_loss=variant.mel_loss, pad_multiple=16),
    )


def full(variant: Variant = VARIANTS[0]) -> Preset:
    model = FastSpeech2Config(dropout=0.2, variance_dropout=0.5)  # the paper's, as its other sizes
    return Preset(
        target=Target(metric="val_mel_l1", value=variant.full_target, mode="min"),
        budget_s=43_200, eval_period_s=600, step_hint=160_000, batch_size=48, log_every_steps=100,
        how_target_was_set="provisional: FastSpeech 2's LJSpeech setup (4+4 FFT blocks, d=256, batch 48, "
                           "160k steps, 17 h on one V100 in the paper); the value is not yet measured here",
        config=TtsSettings(model=model, mel_loss=variant.mel_loss, pad_multiple=16),
    )


# --- the workload ------------------------------------------------------------------------------

@dataclass
class TtsWorkload(TorchWorkload):
    _splits: dict[str, data.Split] = field(default_factory=dict)
    _eval_cache: dict[str, list[Batch]] = field(default_factory=dict)

    @property
    def cfg(self) -> TtsSettings:
        return self.preset.config

    @property
    def folder(self) -> Path:
        return prep.data_dir_for(self.data_dir, self.size)

    def split(self, name: str) -> data.Split:
        if name not in self._splits:
            self._splits[name] = data.load_split(self.folder, name)
        return self._splits[name]

    def build_model(self) -> FastSpeech2:
        stats = load_stats(self.folder)
        return FastSpeech2(self.cfg.model, n_symbols=len(load_symbols(self.folder)),
                           pitch_range=(stats["pitch"]["min"], stats["pitch"]["max"]),
                           energy_range=(stats["energy"]["min"], stats["energy"]["max"]),
                           mel_mean=stats["mel"]["mean"], mel_std=stats["mel"]["std"])

    def train_batches(self, *, seed: int, batch_size: int, rank: int = 0, world_size: int = 1,
                      start_step: int = 0) -> Iterator[Batch]:
        return data.train_batches(self.split("train"), seed=seed, batch_size=batch_size, device=self.backend.device,
                                  rank=rank, world_size=world_size, start_step=start_step,
                                  length_groups=self.cfg.length_groups, pad_multiple=self.cfg.pad_multiple)

    def eval_batches(self, split: str) -> Iterator[Batch]:
        if split not in self._eval_cache:
            self._eval_cache[split] = data.eval_batches(self.split(split), batch_size=self.cfg.eval_batch_size,
                                                        device=self.backend.device,
                                                        pad_multiple=self.cfg.pad_multiple)
        yield from self._eval_cache[split]

    def model_fn(self, params: torch.nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Teacher-forced forward pass: ground-truth durations, pitch and energy."""
        return params(batch["phones"], durations=batch["durations"], pitch=batch["pitch"],
                      energy=batch["energy"], n_frames=batch["targets"]["mels"].shape[1])

    def loss_fn(self, label_batch: dict[str, torch.Tensor], logits_batch: dict[str, torch.Tensor],
                mask_batch=None, label_smoothing: float = 0.0) -> dict[str, torch.Tensor]:
        """FastSpeech 2's loss per clip (each term a mean over the clip's frames or phones): mel
        L1 or MSE (on the PostNet's output too, when there is one) + MSE of log(1 + duration),
        pitch and energy. `summed` over clips, `n_valid_examples` = clips."""
        frames = label_batch["frame_mask"].float()
        phones = label_batch["phone_mask"].float()
        target = label_batch["mels"]

        def mel_term(pred: torch.Tensor) -> torch.Tensor:
            err = (pred.float() - target).abs() if self.cfg.mel_loss == "l1" else (pred.float() - target) ** 2
            return (err.mean(dim=-1) * frames).sum(dim=1) / frames.sum(dim=1)

        def phone_mse(key: str) -> torch.Tensor:
            err = (logits_batch[key].float() - label_batch[key]) ** 2
            return (err * phones).sum(dim=1) / phones.sum(dim=1)

        per_example = mel_term(logits_batch["mels"])
        if "mels_postnet" in logits_batch:
            per_example = per_example + mel_term(logits_batch["mels_postnet"])
        per_example = per_example + phone_mse("log_durations") + phone_mse("pitch") + phone_mse("energy")
        n_clips = torch.full((), len(per_example), device=target.device)  # a fill, not a host-to-device copy
        return {"summed": per_example.sum(), "n_valid_examples": n_clips, "per_example": per_example}

    def eval_sums(self, model: torch.nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Ground-truth durations, predicted pitch and energy: the batch's mel errors over its frames
        and mel bins, the variance predictors' squared errors over its phones, its summed loss."""
        targets = batch["targets"]
        with self.backend.autocast():
            out = model(batch["phones"], durations=batch["durations"], n_frames=targets["mels"].shape[1])
        loss = self.loss_fn(targets, out)
        mel = out.get("mels_postnet", out["mels"]).float()
        err = (mel - targets["mels"]) * targets["frame_mask"][..., None]
        phones = targets["phone_mask"]
        var = {k: ((out[k].float() - targets[k]) ** 2 * phones).sum() for k in ("log_durations", "pitch", "energy")}
        return {"mel_abs": err.abs().sum(), "mel_sq": (err ** 2).sum(),
                "mel_n": targets["frame_mask"].sum() * err.shape[-1], **var, "phone_n": phones.sum(),
                "loss": loss["summed"], "clips": loss["n_valid_examples"]}

    def finalize(self, s: dict[str, float]) -> dict[str, float]:
        """Mel L1 and MSE over all frames and mel bins of the split, the variance predictors' MSE
        over its phones, the mean loss per clip."""
        return {"mel_l1": s["mel_abs"] / s["mel_n"], "mel_mse": s["mel_sq"] / s["mel_n"],
                "duration_mse": s["log_durations"] / s["phone_n"], "pitch_mse": s["pitch"] / s["phone_n"],
                "energy_mse": s["energy"] / s["phone_n"], "loss": s["loss"] / s["clips"]}


def builder(variant: Variant):
    def build(*, preset: Preset, size: str, data_dir: Path, backend) -> TtsWorkload:
        return TtsWorkload(name=variant.name, size=size, preset=preset, backend=backend, data_dir=Path(data_dir))
    return build


for _v in VARIANTS:
    WORKLOADS.register(_v.name, WorkloadSpec(
        name=_v.name,
        description=_v.description,
        presets={"smoke": smoke(_v), "small": small(_v), "full": full(_v)},
        data=DataSpec(is_ready=prep.is_ready, prepare=prep.prepare),
        build_torch=builder(_v),
        cost=analytic_cost.cost,
        loss_type=_v.loss_type,
    ))
