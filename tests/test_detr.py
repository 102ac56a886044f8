"""DETR workload: box ops and Hungarian matching on hand cases (empty targets included), the set
loss, COCO mAP with pycocotools on a hand case, and Group DETR's query groups."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from workloads.detr import box_ops
from workloads.detr.coco_eval import coco_map, detections
from workloads.detr.loss import LossConfig, Targets, hungarian_match, matching_costs, set_loss
from workloads.detr.model import DETR, DetrConfig, ResNet, ResNetConfig, load_backbone, sine_position_encoding

TINY = DetrConfig(backbone=ResNetConfig(block="basic", layers=(1, 1), widths=(8, 16), stem_width=8, stem_kernel=3,
                                        stem_stride=2, stem_pool=False),
                  num_classes=3, d_model=16, n_heads=2, enc_layers=1, dec_layers=2, ffn_dim=32, dropout=0.0,
                  num_queries=4)


# --- box ops -----------------------------------------------------------------------------------

def test_box_conversions_round_trip():
    b = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.2, 0.2]])
    xyxy = box_ops.cxcywh_to_xyxy(b)
    torch.testing.assert_close(xyxy[0], torch.tensor([0.4, 0.3, 0.6, 0.7]))
    torch.testing.assert_close(box_ops.xyxy_to_cxcywh(xyxy), b)


def test_iou_and_generalized_iou_on_hand_cases():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [4.0, 0.0, 6.0, 2.0]])
    iou, union = box_ops.box_iou(a, b)
    torch.testing.assert_close(iou, torch.tensor([[1 / 7, 1.0, 0.0]]))
    torch.testing.assert_close(union, torch.tensor([[7.0, 4.0, 8.0]]))
    giou = box_ops.generalized_box_iou(a, b)
    # enclosing boxes: 3x3 = 9, 2x2 = 4, 6x2 = 12
    torch.testing.assert_close(giou, torch.tensor([[1 / 7 - 2 / 9, 1.0, 0.0 - 4 / 12]]))
    pairs = box_ops.elementwise_generalized_box_iou(a.expand(3, 4), b)
    torch.testing.assert_close(pairs, giou[0])


def test_generalized_iou_is_bounded_on_random_boxes():
    torch.manual_seed(0)
    a = box_ops.cxcywh_to_xyxy(torch.rand(20, 4) * 0.5 + 0.1)
    b = box_ops.cxcywh_to_xyxy(torch.rand(30, 4) * 0.5 + 0.1)
    giou = box_ops.generalized_box_iou(a, b)
    iou, _ = box_ops.box_iou(a, b)
    assert (giou <= iou + 1e-6).all() and (giou >= -1).all()


# --- matching and loss ---------------------------------------------------------------------------

def test_hungarian_matching_is_optimal_against_brute_force():
    rng = np.random.default_rng(0)
    costs = rng.random((1, 2, 4, 5))  # 1 layer, 2 images with 3 and 2 objects
    (matches,) = hungarian_match(costs, (3, 2))
    for image, (size, offset) in enumerate(((3, 0), (2, 3))):
        c = costs[0, image, :, offset:offset + size]
        best = min(sum(c[q, j] for j, q in enumerate(perm)) for perm in itertools.permutations(range(4), size))
        rows, cols = matches[image]
        assert sorted(cols.tolist()) == list(range(size))
        assert c[rows, cols].sum() == pytest.approx(best)


def test_matching_handles_images_without_objects():
    costs = np.zeros((2, 3, 4, 1))
    matches = hungarian_match(costs, (0, 1, 0))
    for layer in matches:
        assert [len(rows) for rows, _ in layer] == [0, 1, 0]


def test_group_matching_matches_every_object_once_per_group():
    rng = np.random.default_rng(1)
    costs = rng.random((1, 1, 12, 2))  # 3 groups of 4 queries
    rows, cols = hungarian_match(costs, (2,), n_groups=3)[0][0]
    assert sorted(cols.tolist()) == [0, 0, 0, 1, 1, 1]
    assert sorted((rows // 4).tolist()) == [0, 0, 1, 1, 2, 2]


def _confident(boxes: torch.Tensor, classes: list[int], n_queries: int, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions (1 layer, 1 image) that put `boxes` with `classes` on the first queries,
    confident "no object" on the rest."""
    logits = torch.full((1, 1, n_queries, n_classes + 1), -20.0)
    logits[..., -1] = 20.0
    pred = torch.full((1, 1, n_queries, 4), 0.5)
    for q, (box, c) in enumerate(zip(boxes, classes)):
        logits[0, 0, q] = -20.0
        logits[0, 0, q, c] = 20.0
        pred[0, 0, q] = box
    return logits, pred


def test_set_loss_is_zero_for_a_perfect_prediction_and_positive_otherwise():
    boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.2]])
    targets = Targets(torch.tensor([2, 0]), boxes, (2,))
    logits, pred = _confident(boxes.flip(0), [0, 2], n_queries=5, n_classes=3)  # order does not matter
    assert set_loss(logits, pred, targets, LossConfig()).item() == pytest.approx(0.0, abs=1e-6)
    wrong_box = pred.clone()
    wrong_box[0, 0, 0, 0] += 0.1
    # query 0 holds the 0.3 x 0.2 box: cx off by 0.1 gives L1 0.1 and IoU = GIoU = 0.04 / 0.08,
    # over 2 objects: (5 * 0.1 + 2 * (1 - 0.5)) / 2
    assert set_loss(logits, wrong_box, targets, LossConfig()).item() == pytest.approx(0.75, rel=1e-4)
    wrong_class = logits.clone()
    wrong_class[0, 0, 0] = logits[0, 0, 1]  # query 0 now says class 2
    assert set_loss(wrong_class, pred, targets, LossConfig()).item() > 1.0


def test_set_loss_with_no_objects_trains_towards_no_object():
    logits = torch.zeros(2, 2, 4, 4, requires_grad=True)
    boxes = torch.rand(2, 2, 4, 4, requires_grad=True)
    empty = Targets(torch.zeros(0, dtype=torch.long), torch.zeros(0, 4), (0, 0))
    loss = set_loss(logits, boxes, empty, LossConfig()).sum()
    loss.backward()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(2 * np.log(4), rel=1e-5)  # 2 layers, uniform CE
    assert (logits.grad[..., -1] < 0).all()  # raise "no object"
    assert boxes.grad.abs().sum() == 0


def test_matching_costs_prefer_the_right_query():
    boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2]])
    logits, pred = _confident(boxes, [1], n_queries=3, n_classes=3)
    costs = matching_costs(logits, pred, Targets(torch.tensor([1]), boxes, (1,)), LossConfig())
    assert costs.shape == (1, 1, 3, 1) and costs[0, 0, :, 0].argmin().item() == 0


# --- model ---------------------------------------------------------------------------------------

def test_sine_encoding_depends_only_on_the_unpadded_extent():
    mask = torch.zeros(2, 4, 6, dtype=torch.bool)
    mask[1, :, 3:] = True  # image 1 is half as wide, padded
    pos = sine_position_encoding(mask, 8)
    assert pos.shape == (2, 4, 6, 16)
    # the right edge of image 1's valid part is encoded like image 0's right edge
    torch.testing.assert_close(pos[1, :, 2], pos[0, :, 5])


def test_detr_shapes_groups_and_padding():
    torch.manual_seed(0)
    model = DETR(TINY.model_copy(update={"num_groups": 3}))
    images = torch.randn(2, 3, 32, 32)
    out = model(images)
    assert out["logits"].shape == (2, 2, 12, 4) and out["boxes"].shape == (2, 2, 12, 4)
    model.eval()
    out = model(images)
    assert out["logits"].shape == (2, 2, 4, 4)
    assert ((out["boxes"] >= 0) & (out["boxes"] <= 1)).all()
    # padding an image (with its mask) leaves its predictions nearly unchanged
    padded = torch.zeros(2, 3, 32, 48)
    padded[..., :32] = images
    mask = torch.zeros(2, 32, 48, dtype=torch.bool)
    mask[..., 32:] = True
    out_padded = model(padded, mask)
    assert out_padded["logits"].shape == out["logits"].shape


def test_group_queries_do_not_see_each_other():
    torch.manual_seed(0)
    model = DETR(TINY.model_copy(update={"num_groups": 2}))
    images = torch.randn(1, 3, 32, 32)
    base = model(images)["logits"]
    with torch.no_grad():
        model.query_embed.weight[4:] += 1.0  # change group 1's queries only
    changed = model(images)["logits"]
    torch.testing.assert_close(base[:, :, :4], changed[:, :, :4])
    assert not torch.allclose(base[:, :, 4:], changed[:, :, 4:])


def test_learned_decoder_inputs_are_per_query_and_grouped():
    """DETR feeds the decoder zeros; the smoke model's learned inputs (one embedding per query, per
    group) make the queries differ from the first step, and the groups stay independent."""
    torch.manual_seed(0)
    assert not DetrConfig().learned_tgt
    model = DETR(TINY.model_copy(update={"learned_tgt": True, "num_groups": 2}))
    assert model.tgt_embed.weight.shape == (8, TINY.d_model)
    images = torch.randn(1, 3, 32, 32)
    base = model(images)["logits"]
    with torch.no_grad():
        model.tgt_embed.weight[4:] += 1.0  # change group 1's inputs only
    changed = model(images)["logits"]
    torch.testing.assert_close(base[:, :, :4], changed[:, :, :4])
    assert not torch.allclose(base[:, :, 4:], changed[:, :, 4:])
    model.eval()
    assert model(images)["logits"].shape == (2, 1, 4, 4)  # inference: the first group's 4 queries


def test_backbone_loads_torchvision_style_weights_and_freezes_early_layers(tmp_path):
    torch.manual_seed(0)
    source = ResNet(TINY.backbone)  # trainable batch norms, as torchvision saves them
    state = {**source.state_dict(), "fc.weight": torch.zeros(2, 16), "fc.bias": torch.zeros(2)}
    torch.save(state, tmp_path / "resnet.pth")
    model = DETR(TINY, frozen_bn=True)
    load_backbone(model, str(tmp_path / "resnet.pth"))
    assert torch.equal(model.backbone.conv1.weight, source.conv1.weight)
    assert torch.equal(model.backbone.layer2[0].bn1.running_var, source.layer2[0].bn1.running_var)
    assert not model.backbone.conv1.weight.requires_grad and model.backbone.layer2[0].conv1.weight.requires_grad
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a ResNet"):
        load_backbone(DETR(TINY, frozen_bn=True), str(tmp_path / "other.pth"))


# --- COCO mAP --------------------------------------------------------------------------------------

def _ground_truth(boxes: list[list[float]], categories: list[int]):
    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = {
        "images": [{"id": 1, "height": 100, "width": 200}],
        "annotations": [{"id": k + 1, "image_id": 1, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
                        for k, (b, c) in enumerate(zip(boxes, categories))],
        "categories": [{"id": 7, "name": "a"}, {"id": 9, "name": "b"}],
    }
    gt.createIndex()
    return gt


def test_coco_map_on_a_hand_case():
    gt = _ground_truth([[10, 10, 50, 40]], [7])
    exact = np.array([[1, 10, 10, 50, 40, 0.9, 7]])
    assert coco_map(gt, exact, [1]) == {"map": pytest.approx(1.0), "ap50": pytest.approx(1.0)}
    # IoU 0.6 (box shifted right by 12.5 of 50: inter 37.5*40 / union 62.5*40): true positive at
    # thresholds .50 .55 .60 only, so AP = 3/10, AP50 = 1
    shifted = np.array([[1, 22.5, 10, 50, 40, 0.9, 7]])
    assert coco_map(gt, shifted, [1]) == {"map": pytest.approx(0.3), "ap50": pytest.approx(1.0)}
    wrong_class = np.array([[1, 10, 10, 50, 40, 0.9, 9]])
    assert coco_map(gt, wrong_class, [1]) == {"map": 0.0, "ap50": 0.0}
    assert coco_map(gt, np.zeros((0, 7)), [1]) == {"map": 0.0, "ap50": 0.0}


def test_detections_convert_to_coco_pixels_and_categories():
    logits = torch.tensor([[[0.0, 5.0, 0.0], [3.0, 0.0, 9.0]]])  # 2 queries, 2 classes + no object
    boxes = torch.tensor([[[0.25, 0.5, 0.25, 0.4], [0.5, 0.5, 1.0, 1.0]]])
    dets = detections(logits, boxes, torch.tensor([[100, 200]]), torch.tensor([42]), np.array([7, 9]))
    assert dets.shape == (2, 7)
    np.testing.assert_allclose(dets[0, :5], [42, 25, 30, 50, 40])
    assert dets[0, 6] == 9 and dets[1, 6] == 7
    assert dets[0, 5] > 0.9 and dets[1, 5] < 0.01
    dets[:, 0] = 1  # the hand ground truth's image
    assert coco_map(_ground_truth([[25, 30, 50, 40]], [9]), dets, [1])["map"] == pytest.approx(1.0)
