"""DETR data: the COCO indexer and loader on tiny generated COCO files, transforms, batching, the
smoke generator, and plain DETR training to the smoke target."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from PIL import Image

from algobench.errors import UserError
from workloads.detr import data as ddata
from workloads.detr import prepare as dprep

EVAL_CFG = ddata.DataConfig(train_scales=(40,), eval_scale=40, max_size=200, crop_prob=0.0, pad_multiple=8,
                            loader_workers=0)


@pytest.fixture
def tiny_coco(tmp_path):
    """3 images (40x80, 40x40, 40x60) with a normal box, a crowd box, a zero-width box and an image
    without objects, written as PNG files and an instances JSON."""
    (tmp_path / "images").mkdir()
    sizes = {1: (40, 80), 2: (40, 40), 3: (40, 60)}
    for image_id, (h, w) in sizes.items():
        Image.fromarray(np.full((h, w, 3), 60 * image_id, dtype=np.uint8)).save(tmp_path / "images" / f"{image_id}.png")
    coco = {
        "images": [{"id": i, "file_name": f"{i}.png", "height": h, "width": w} for i, (h, w) in sizes.items()],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "bbox": [20, 10, 40, 20], "area": 800, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 1},
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [5, 5, 0, 10], "area": 0, "iscrowd": 0},
            {"id": 4, "image_id": 2, "category_id": 3, "bbox": [0, 0, 20, 40], "area": 800, "iscrowd": 0},
        ],
        "categories": [{"id": 3, "name": "c"}, {"id": 5, "name": "e"}],
    }
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(coco))
    info = dprep.index_coco(ann, tmp_path / "images", tmp_path / "split.npz")
    assert info == {"images": 3, "objects": 2, "classes": 2}
    return ddata.load_index(tmp_path / "split.npz")


def test_index_drops_crowd_and_empty_boxes_and_maps_categories(tiny_coco):
    idx = tiny_coco
    assert idx.box_ptr.tolist() == [0, 1, 2, 2]
    assert idx.labels.tolist() == [1, 0]  # category 5 -> class 1, category 3 -> class 0
    assert idx.category_ids.tolist() == [3, 5]
    assert idx.sizes.tolist() == [[40, 80], [40, 40], [40, 60]]


def test_eval_transform_gives_normalized_cxcywh(tiny_coco):
    ds = ddata.CocoDetection(tiny_coco, EVAL_CFG)
    image, boxes, labels, image_id, orig = ds[(0, None)]
    assert image.shape == (3, 40, 80) and image_id == 1 and orig == (40, 80)
    np.testing.assert_allclose(boxes, [[0.5, 0.5, 0.5, 0.5]])
    assert labels.tolist() == [1]
    _, no_boxes, _, _, _ = ds[(2, None)]
    assert no_boxes.shape == (0, 4)


def test_flip_and_resize_move_boxes_with_the_image(tiny_coco):
    cfg = EVAL_CFG.model_copy(update={"flip_prob": 1.0, "train_scales": (20,)})
    image, boxes, _, _, _ = ddata.CocoDetection(tiny_coco, cfg)[(1, 7)]
    assert image.shape == (3, 20, 20)
    np.testing.assert_allclose(boxes, [[0.75, 0.5, 0.5, 1.0]])  # [0, 0, 20, 40] of 40x40, mirrored


def test_collate_pads_with_a_mask_and_zeros(tiny_coco):
    ds = ddata.CocoDetection(tiny_coco, EVAL_CFG)
    batch = ddata.collate([ds[(i, None)] for i in range(3)], pad_multiple=8)
    assert batch["inputs"].shape == (3, 3, 40, 80)
    mask = batch["pad_mask"]
    assert not mask[0].any() and mask[1, :, 40:].all() and not mask[1, :, :40].any()
    assert (batch["inputs"][1, :, :, 40:] == 0).all()
    assert batch["targets"].sizes == (1, 1, 0) and batch["image_ids"].tolist() == [1, 2, 3]
    same_size = ddata.collate([ds[(1, None)]], pad_multiple=8)
    assert "pad_mask" not in same_size


def test_train_sampler_is_deterministic_and_ranks_split_the_batch():
    def first(n_steps, **kw):
        it = iter(ddata.TrainSampler(10, seed=2, batch_size=4, **kw))
        return [next(it) for _ in range(n_steps)]

    a = first(5, rank=0, world_size=1, start_step=0)
    assert a == first(5, rank=0, world_size=1, start_step=0)
    assert first(1, rank=0, world_size=1, start_step=3)[0] == a[3]
    halves = [first(1, rank=r, world_size=2, start_step=0)[0] for r in range(2)]
    assert halves[0] + halves[1] == a[0]
    seen = [i for batch in a[:5] for i, _ in batch][:10]
    assert sorted(seen) == list(range(10))  # an epoch visits every image once


def test_indexer_reports_missing_images_and_bad_files(tmp_path, tiny_coco):
    coco = {"images": [{"id": 1, "file_name": "nope.png", "height": 4, "width": 4}], "annotations": [],
            "categories": []}
    (tmp_path / "a.json").write_text(json.dumps(coco))
    with pytest.raises(UserError, match="missing"):
        dprep.index_coco(tmp_path / "a.json", tmp_path, tmp_path / "a.npz")
    (tmp_path / "b.json").write_text(json.dumps({"images": []}))
    with pytest.raises(UserError, match="no 'annotations'"):
        dprep.index_coco(tmp_path / "b.json", tmp_path, tmp_path / "b.npz")
    with pytest.raises(UserError, match="needs --source"):
        dprep.prepare("full", tmp_path / "data")
    with pytest.raises(UserError, match="not a COCO 2017 folder"):
        dprep.prepare("full", tmp_path / "data", source=tmp_path)


def test_data_prepare_full_indexes_a_coco_2017_folder(tmp_path):
    """`algobench data prepare detr --size full --source DIR` on a COCO 2017 layout of generated
    images: both splits indexed, images left where they are, the workload's data ready."""
    from tests.helpers import cli
    from workloads.detr import DetrWorkload, full

    coco = tmp_path / "coco"
    for ours, theirs in dprep.COCO_SPLITS.items():
        ann, images = dprep.write_smoke(tmp_path / ours, counts={ours: 3})[ours]
        (coco / "annotations").mkdir(parents=True, exist_ok=True)
        ann.rename(coco / "annotations" / f"instances_{theirs}.json")
        images.rename(coco / theirs)
    result = cli("data", "prepare", "detr", "--size", "full", "--source", str(coco), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 0, result.stderr
    assert dprep.is_ready("full", tmp_path / "d")
    index = ddata.load_index(tmp_path / "d" / "detr" / "full" / "val.npz")
    assert len(index) == 3 and index.image_root == (coco / "val2017").resolve()
    wl = DetrWorkload(name="detr", size="full", preset=full(), backend=None, data_dir=tmp_path / "d")
    assert len(wl.index("train")) == 3


def test_read_idx_reads_mnist_format(tmp_path):
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + np.array([2, 3, 4], dtype=">u4").tobytes()
    with gzip.open(tmp_path / "x.gz", "wb") as f:
        f.write(header + pixels.tobytes())
    np.testing.assert_array_equal(dprep.read_idx(tmp_path / "x.gz"), pixels)


def test_smoke_generator_writes_coco_with_boxes_on_the_items(tmp_path):
    splits = dprep.write_smoke(tmp_path / "coco", counts={"train": 12, "val": 4})
    ann_file, image_root = splits["train"]
    coco = json.loads(ann_file.read_text())
    assert len(coco["images"]) == 12 and [c["id"] for c in coco["categories"]] == list(range(1, 11))
    per_image = {}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= dprep.SMOKE_SIZE and y + h <= dprep.SMOKE_SIZE and w >= 2 and h >= 2
        per_image[ann["image_id"]] = per_image.get(ann["image_id"], 0) + 1
    assert set(per_image.values()) <= {1, 2, 3}
    info = dprep.index_coco(ann_file, image_root, tmp_path / "train.npz")
    assert info["images"] == 12 and info["classes"] == 10
    val_ids = {im["id"] for im in json.loads(splits["val"][0].read_text())["images"]}
    assert not val_ids & {im["id"] for im in coco["images"]}  # ids are unique across splits


@pytest.mark.slow
def test_adan_reaches_the_detr_smoke_target(data_dir):
    """Plain DETR leaves its plateau with the smoke preset: Adan with its defaults and the default
    seed reaches val_map 0.02 at the eval of step 900 on CI's kind of machine (0.0193 at 800; steps,
    not the clock, decide on a loaded machine). When the plateau ends moves with a CPU's rounding
    (README: step 600 where the target was set), so the bound leaves one eval of room."""
    from algobench.specs import RunOptions, TrialConfig
    from tests.helpers import run

    cfg = TrialConfig(workload="detr", size="smoke", submission="adan", seed=0, data_dir=data_dir,
                      options=RunOptions(device="cpu", budget_s=1e6, max_steps=1000))
    evals, end = run(cfg)
    assert end.status == "reached", (end.reason, [e.metrics.get("val_map") for e in evals])
    assert evals[0].metrics["val_map"] < 0.005  # far below the target early on


def test_detr_runs_a_few_steps_through_the_runner(data_dir):
    from algobench.specs import RunOptions, TrialConfig
    from tests.helpers import run

    for name in ("detr", "detr_group"):
        cfg = TrialConfig(workload=name, size="smoke", submission="adamw", seed=0, data_dir=data_dir,
                          options=RunOptions(device="cpu", max_steps=3, eval_period_steps=3))
        evals, end = run(cfg)
        assert end.reason == "max steps", end.traceback
        assert {"val_map", "val_ap50", "test_map", "val_loss"} <= set(evals[-1].metrics)
