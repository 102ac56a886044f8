"""COCO box mAP with pycocotools' `COCOeval`, on DETR's predictions converted to COCO results.

DETR's post-processing: each query's score is its highest class probability excluding "no
object", its label that class, its box scaled from [0, 1] to the original image's pixels.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import torch

from workloads.detr.box_ops import cxcywh_to_xyxy


def detections(logits: torch.Tensor, boxes: torch.Tensor, orig_sizes: torch.Tensor, image_ids: torch.Tensor,
               category_ids: np.ndarray) -> np.ndarray:
    """COCO results as an (B * Q, 7) array: image_id, x, y, w, h (pixels), score, category_id.
    `logits` (B, Q, C + 1), `boxes` (B, Q, 4) cxcywh in [0, 1], `orig_sizes` (B, 2) (h, w)."""
    prob = logits.float().softmax(-1)[..., :-1]
    scores, labels = prob.max(-1)
    h, w = orig_sizes.unbind(-1)
    xyxy = cxcywh_to_xyxy(boxes.float()) * torch.stack([w, h, w, h], -1)[:, None, :]
    xywh = torch.cat([xyxy[..., :2], xyxy[..., 2:] - xyxy[..., :2]], -1)
    ids = image_ids[:, None].expand_as(scores)
    out = torch.cat([ids[..., None].double(), xywh.double(), scores[..., None].double(),
                     labels[..., None].double()], -1).flatten(0, 1).cpu().numpy()
    labels = out[:, 6].astype(np.int64)
    out = out[labels < len(category_ids)]  # a class the annotations do not list cannot match: dropped
    out[:, 6] = category_ids[labels[labels < len(category_ids)]]
    return out


def load_ground_truth(ann_file: Path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ann_file))


def coco_map(ground_truth, dets: np.ndarray, image_ids: list[int]) -> dict[str, float]:
    """`map` (AP at IoU .50:.05:.95) and `ap50` of `dets` on the images `image_ids`; 0 when there
    is no detection."""
    from pycocotools.cocoeval import COCOeval

    if len(dets) == 0:
        return {"map": 0.0, "ap50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        results = ground_truth.loadRes(dets)
        evaluator = COCOeval(ground_truth, results, iouType="bbox")
        evaluator.params.imgIds = sorted(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = np.maximum(evaluator.stats[:2], 0.0)  # -1 means "no ground truth": counts as 0
    return {"map": float(stats[0]), "ap50": float(stats[1])}
