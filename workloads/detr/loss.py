"""DETR's set-prediction loss: Hungarian matching, then class, L1 and GIoU losses on the matched
pairs, for the final decoder layer and (auxiliary losses) every earlier one.

Matching cost of query i and object j (DETR's weights): 1 * (-p_i(class_j)) + 5 * |b_i - b_j|_1
+ 2 * (-GIoU(b_i, b_j)); `scipy.optimize.linear_sum_assignment` solves each image (and, for
Group DETR, each query group) on the CPU. That is the training step's one host sync: the cost
matrices of every decoder layer are computed on the device and copied to the host together.

Loss (normalized by the number of objects in the batch, times the number of query groups):
cross-entropy over all queries with the "no object" class down-weighted to `eos_coef`, plus
5 * L1 and 2 * (1 - GIoU) over the matched boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from scipy.optimize import linear_sum_assignment

from workloads.detr.box_ops import cxcywh_to_xyxy, elementwise_generalized_box_iou, generalized_box_iou


class LossConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cost_class: float = 1.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    weight_ce: float = 1.0
    weight_bbox: float = 5.0
    weight_giou: float = 2.0
    eos_coef: float = 0.1  # weight of the "no object" class in the cross-entropy
    aux_loss: bool = True


@dataclass(frozen=True)
class Targets:
    """The objects of a batch of images, concatenated: `labels` (T,) class indices, `boxes` (T, 4)
    cxcywh in [0, 1]; `sizes[i]` objects belong to image i (known on the host)."""

    labels: torch.Tensor
    boxes: torch.Tensor
    sizes: tuple[int, ...]

    def to(self, device: torch.device, non_blocking: bool = False) -> Targets:
        return Targets(self.labels.to(device, non_blocking=non_blocking),
                       self.boxes.to(device, non_blocking=non_blocking), self.sizes)


Match = tuple[np.ndarray, np.ndarray]  # (query indices, object indices) of one image


@torch.no_grad()
def matching_costs(logits: torch.Tensor, boxes: torch.Tensor, targets: Targets, cfg: LossConfig) -> torch.Tensor:
    """Cost (L, B, Q, T) of assigning each query of each image to each object of the batch."""
    prob = logits.float().softmax(-1)
    cost_class = -prob[..., targets.labels]
    cost_bbox = torch.cdist(boxes.float().flatten(0, 2), targets.boxes, p=1).view(cost_class.shape)
    cost_giou = -generalized_box_iou(cxcywh_to_xyxy(boxes.float().flatten(0, 2)), cxcywh_to_xyxy(targets.boxes))
    return cfg.cost_bbox * cost_bbox + cfg.cost_class * cost_class + cfg.cost_giou * cost_giou.view(cost_class.shape)


def hungarian_match(costs: np.ndarray, sizes: tuple[int, ...], n_groups: int = 1) -> list[list[Match]]:
    """Optimal one-to-one assignment per layer and image (per query group with Group DETR, the
    groups' matches concatenated). `costs` is (L, B, Q, T) on the host."""
    n_layers, _, n_queries, _ = costs.shape
    per_group = n_queries // n_groups
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    out = []
    for layer in range(n_layers):
        matches = []
        for i, size in enumerate(sizes):
            c = costs[layer, i, :, offsets[i]:offsets[i] + size]
            rows, cols = [], []
            for g in range(n_groups):
                r, k = linear_sum_assignment(c[g * per_group:(g + 1) * per_group])
                rows.append(r + g * per_group)
                cols.append(k)
            matches.append((np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)))
        out.append(matches)
    return out


def set_loss(logits: torch.Tensor, boxes: torch.Tensor, targets: Targets, cfg: LossConfig,
             n_groups: int = 1) -> torch.Tensor:
    """DETR's loss of each image (B,), summed over the decoder layers used; the batch loss is
    the sum over images. `logits` (L, B, Q, C + 1) and `boxes` (L, B, Q, 4)."""
    if not cfg.aux_loss:
        logits, boxes = logits[-1:], boxes[-1:]
    n_layers, batch, n_queries, n_classes = logits.shape
    device = logits.device
    costs = matching_costs(logits, boxes, targets, cfg).cpu().numpy()  # the one host sync
    matches = hungarian_match(costs, targets.sizes, n_groups)
    n_objects = max(sum(targets.sizes), 1) * n_groups

    # Host-side index arrays for all layers at once: (layer, image, query) and object index.
    layer_idx, image_idx, query_idx, object_idx = [], [], [], []
    offsets = np.concatenate([[0], np.cumsum(targets.sizes)])
    for layer, layer_matches in enumerate(matches):
        for i, (q, o) in enumerate(layer_matches):
            layer_idx.append(np.full(len(q), layer))
            image_idx.append(np.full(len(q), i))
            query_idx.append(q)
            object_idx.append(o + offsets[i])
    idx = [torch.from_numpy(np.concatenate(a).astype(np.int64)).to(device, non_blocking=True)
           for a in (layer_idx, image_idx, query_idx, object_idx)]
    layer_i, image_i, query_i, object_i = idx

    # Classification: every query, "no object" unless matched.
    target_class = torch.full((n_layers, batch, n_queries), n_classes - 1, dtype=torch.long, device=device)
    target_class[layer_i, image_i, query_i] = targets.labels[object_i]
    class_weight = torch.ones(n_classes, device=device)
    class_weight[-1] = cfg.eos_coef
    ce = F.cross_entropy(logits.float().flatten(0, 2), target_class.flatten(), reduction="none").view(target_class.shape)
    w = class_weight[target_class]
    per_image = cfg.weight_ce * ((w * ce).sum(2) / w.sum((1, 2))[:, None]).sum(0)  # (B,): weighted mean per layer

    # Boxes: L1 and GIoU on the matched pairs.
    pred = boxes.float()[layer_i, image_i, query_i]
    true = targets.boxes[object_i]
    l1 = (pred - true).abs().sum(-1)
    giou = 1 - elementwise_generalized_box_iou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(true))
    box_terms = (cfg.weight_bbox * l1 + cfg.weight_giou * giou) / n_objects
    return per_image + torch.zeros(batch, device=device).index_add(0, image_i, box_terms)
