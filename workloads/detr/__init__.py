"""Object detection with DETR on COCO-format data, scored by COCO box mAP (pycocotools).

Variant `detr_group`: Group DETR's one-to-many assignment during training (query groups each
matched one-to-one); the same plain DETR at inference, with its own targets.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from algobench.errors import UserError
from algobench.specs import Preset, Target
from algobench.frameworks.torch import Batch, TorchWorkload
from algobench.workload import DataSpec, ParamKind, WorkloadSpec
from workloads.detr import data
from workloads.detr import cost as analytic_cost
from workloads.detr import prepare as prep
from workloads.detr.coco_eval import coco_map, detections, load_ground_truth
from workloads.detr.loss import LossConfig, Targets, set_loss
from workloads.detr.model import DETR, DetrConfig, ResNetConfig, load_backbone
from workloads import WORKLOADS

BACKBONE_FILE = "backbone.pth"  # optional torchvision-format ResNet weights in data/detr/<size>/


class DetrWorkloadConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model: DetrConfig
    loss: LossConfig = LossConfig()
    data: data.DataConfig
    cache_eval: bool = False  # keep the eval batches on the device (small eval sets)


# --- presets: one code path, three sizes -----------------------------------------------------

SMOKE_MODEL = DetrConfig(
    backbone=ResNetConfig(block="basic", layers=(1, 1, 1), widths=(16, 32, 64), stem_width=16, stem_kernel=3,
                          stem_stride=2, stem_pool=False),  # output stride 8: 64x64 images -> 8x8 tokens
    num_classes=10, d_model=64, n_heads=4, enc_layers=2, dec_layers=2, ffn_dim=128, dropout=0.0, pre_norm=True,
    num_queries=10, learned_tgt=True)  # learned decoder inputs: with DETR's zeros the decoder learns to ignore the image
SMOKE_DATA = data.DataConfig(train_scales=(64,), eval_scale=64, max_size=64, crop_prob=0.0, pad_multiple=8,
                             loader_workers=0, cache_images=True, eval_batch_size=100)
SMOKE_TARGETS = {"detr": 0.02, "detr_group": 0.02}  # val_map; an untrained model scores 0.0001-0.0003
SMOKE_HOW = {
    "detr": "Adan and AdamW (submissions' defaults, seed 0, evals every 100 steps), measured 2026-12-06 on one "
            "idle core: Adan reaches val_map 0.02 at step 900 (0.0247; 0.0193 at 800), AdamW at step 1,000 "
            "(0.0223), in 64 s and 59 s (recorded at 600 and 900 when set: the plateau's end moves with a "
            "machine's rounding). Untrained: 0.0001-0.0003; a model on DETR's plateau (image-independent "
            "boxes) 0.001-0.003. ~65-70 ms of CPU per step on one core (110-120 ms at a load of 5 on 2 "
            "cores); budget 180 s",
    "detr_group": "AdamW and Adan (submissions' defaults, seed 0, evals every 100 steps): both reach val_map 0.02 "
                  "at step 600 (AdamW 0.0213, Adan 0.0327); untrained 0.0001-0.0002. ~80 ms of CPU per step on one "
                  "core (~130 ms at a load of 5 on 2 cores), so ~50 s on one idle core; budget 180 s",
}
GROUPS = {"detr": {"smoke": 1, "full": 1}, "detr_group": {"smoke": 4, "full": 11}}


def smoke(variant: str = "detr") -> Preset:
    return Preset(
        target=Target(metric="val_map", value=SMOKE_TARGETS[variant], mode="max"),
        budget_s=180, eval_period_s=10, eval_period_steps=100, step_hint=3000, batch_size=16, log_every_steps=25,
        how_target_was_set=SMOKE_HOW[variant],
        config=DetrWorkloadConfig(model=SMOKE_MODEL.model_copy(update={"num_groups": GROUPS[variant]["smoke"]}),
                                  data=SMOKE_DATA, cache_eval=True),
    )


def small(variant: str = "detr") -> Preset:
    return Preset(
        target=Target(metric="val_map", value=0.10, mode="max"),
        budget_s=14_400, eval_period_s=1200, step_hint=30_000, batch_size=64, log_every_steps=50,
        how_target_was_set="provisional: COCO 2017 at low resolution (shorter side 320-480) with a ResNet-50 "
                           "DETR; not yet calibrated on a GPU (see README)",
        config=DetrWorkloadConfig(
            model=DetrConfig(num_groups=GROUPS[variant]["full"]),
            data=data.DataConfig(train_scales=(320, 352, 384, 416, 448, 480), eval_scale=416, max_size=693)),
    )


def full(variant: str = "detr") -> Preset:
    return Preset(
        target=Target(metric="val_map", value=0.30, mode="max"),
        budget_s=43_200, eval_period_s=3600, step_hint=92_500, batch_size=64, log_every_steps=50,
        how_target_was_set="provisional: DETR-R50 (ImageNet backbone in data/detr/full/backbone.pth) is reported "
                           "near AP 0.35 after 50 epochs (92,500 steps at batch 64, the step hint); the target "
                           "0.30 and the 12 h budget on 8 GPUs are not yet measured with this harness",
        config=DetrWorkloadConfig(model=DetrConfig(num_groups=GROUPS[variant]["full"]), data=data.DataConfig()),
    )


# --- the workload ------------------------------------------------------------------------------

@dataclass
class DetrWorkload(TorchWorkload):
    _index: dict[str, data.SplitIndex] = field(default_factory=dict)
    _ground_truth: dict[str, object] = field(default_factory=dict)
    _eval_cache: dict[str, list[Batch]] = field(default_factory=dict)

    @property
    def cfg(self) -> DetrWorkloadConfig:
        return self.preset.config

    @property
    def folder(self) -> Path:
        return prep.data_dir_for(self.data_dir, self.size)

    def index(self, split: str) -> data.SplitIndex:
        if split not in self._index:
            self._index[split] = data.load_index(self.folder / f"{split}.npz")
        return self._index[split]

    def build_model(self) -> DETR:
        weights = self.folder / BACKBONE_FILE
        model = DETR(self.cfg.model, frozen_bn=weights.is_file())
        if weights.is_file():
            try:
                load_backbone(model, str(weights))
            except ValueError as err:
                raise UserError(str(err)) from None
        return model

    def param_kinds(self, model: torch.nn.Module) -> dict[str, ParamKind]:
        """The base kinds, with attention's `in_proj_bias` counted as a bias."""
        kinds = super().param_kinds(model)
        return {k: ParamKind.BIAS if k.endswith("_bias") else v for k, v in kinds.items()}

    def train_batches(self, *, seed: int, batch_size: int, rank: int = 0, world_size: int = 1,
                      start_step: int = 0) -> Iterator[Batch]:
        return data.train_loader(self.index("train"), self.cfg.data, seed=seed, batch_size=batch_size,
                                 device=self.backend.device, rank=rank, world_size=world_size, start_step=start_step)

    def eval_batches(self, split: str) -> Iterator[Batch]:
        if split in self._eval_cache:
            return iter(self._eval_cache[split])
        batches = (data.to_device(b, self.backend.device) for b in data.eval_loader(self.index(split), self.cfg.data))
        if self.cfg.cache_eval:
            self._eval_cache[split] = list(batches)
            return iter(self._eval_cache[split])
        return batches

    def model_fn(self, params: torch.nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """`logits` (L, B, Q, C + 1) and `boxes` (L, B, Q, 4) of every decoder layer."""
        return params(batch["inputs"], batch.get("pad_mask"))

    def loss_fn(self, label_batch: Targets, logits_batch: dict[str, torch.Tensor], mask_batch=None,
                label_smoothing: float = 0.0) -> dict[str, torch.Tensor]:
        """DETR's Hungarian set loss. `per_example` is each image's share of the batch loss times
        the batch size, so `summed / n_valid_examples` (images) is DETR's loss."""
        logits, boxes = logits_batch["logits"], logits_batch["boxes"]
        n_groups = logits.shape[2] // self.cfg.model.num_queries
        batch = logits.shape[1]
        per_image = set_loss(logits, boxes, label_batch, self.cfg.loss, n_groups) * batch
        return {"summed": per_image.sum(), "n_valid_examples": torch.tensor(batch, device=logits.device),
                "per_example": per_image}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, float]:
        """DETR's loss, and COCO box mAP (`map`, AP@[.5:.95]) and AP50 (`ap50`) with COCOeval."""
        was_training = model.training
        model.eval()
        index = self.index(split)
        total = torch.zeros((), device=self.backend.device, dtype=torch.float64)
        count = torch.zeros((), device=self.backend.device, dtype=torch.float64)
        dets = []
        for batch in self.eval_batches(split):
            with self.backend.autocast():
                out = self.model_fn(model, batch)
            loss = self.loss_fn(batch["targets"], out)
            total += loss["summed"].double()
            count += loss["n_valid_examples"].double()
            dets.append(detections(out["logits"][-1], out["boxes"][-1], batch["orig_sizes"], batch["image_ids"],
                                   index.category_ids))
        model.train(was_training)
        if split not in self._ground_truth:
            self._ground_truth[split] = load_ground_truth(index.ann_file)
        scores = coco_map(self._ground_truth[split], np.concatenate(dets), index.image_ids.tolist())
        return {"loss": (total / count).item(), **scores}


# --- registration ------------------------------------------------------------------------------

def _builder(name: str):
    def build(*, preset: Preset, size: str, data_dir: Path, backend) -> DetrWorkload:
        splits = ("val", "test") if size == "smoke" else ("val",)  # COCO's test-dev labels are not public
        return DetrWorkload(name=name, size=size, preset=preset, backend=backend, data_dir=Path(data_dir),
                            eval_splits=splits)
    return build


for _name, _description in {
    "detr": "DETR (ResNet + transformer, Hungarian matching) on COCO 2017, box mAP "
            "(smoke: Fashion-MNIST items on photos, 64 px)",
    "detr_group": "Group DETR: DETR trained with query groups (one-to-many assignment), box mAP "
                  "(smoke: Fashion-MNIST items on photos, 64 px)",
}.items():
    WORKLOADS.register(_name, WorkloadSpec(
        name=_name, description=_description,
        presets={"smoke": smoke(_name), "small": small(_name), "full": full(_name)},
        data=DataSpec(is_ready=prep.is_ready, prepare=prep.prepare),
        build_torch=_builder(_name),
        cost=analytic_cost.cost,
    ))
