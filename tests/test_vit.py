"""ViT: the idx reader, the model's flags, crops, the ImageNet converter and loader on generated
JPEGs, the accuracy metric on a hand-made case."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
import torch
from PIL import Image

from algobench.errors import UserError
from algobench.frameworks.torch import TorchBackend
from workloads import WORKLOADS
from workloads.layers import EncoderConfig
from workloads.vit import VARIANTS, VitSettings, VitWorkload
from workloads.vit import prepare as prep
from workloads.vit.data import step_indices
from workloads.vit.idx import IdxError, idx_bytes, parse_idx, read_idx
from workloads.vit.images import ImageShards, center_crop_box, random_resized_crop_box
from workloads.vit.model import ViT, ViTConfig, posemb_sincos_2d

TINY = EncoderConfig(width=32, depth=1, n_heads=2, mlp_dim=64, activation="gelu_tanh")


# --- idx --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8", "<i4", "<f4"])
def test_idx_round_trips(dtype):
    array = (np.arange(24) - 5).reshape(2, 3, 4).astype(dtype)
    back = parse_idx(idx_bytes(array))
    assert back.shape == (2, 3, 4) and np.array_equal(back, array)


def test_idx_header_is_lecuns():
    data = idx_bytes(np.zeros((2, 3), dtype=np.uint8))
    assert data[:4] == bytes([0, 0, 0x08, 2]) and data[4:12] == bytes([0, 0, 0, 2, 0, 0, 0, 3]) and len(data) == 18


def test_idx_rejects_bad_files(tmp_path):
    with pytest.raises(IdxError, match="magic"):
        parse_idx(b"\x1f\x8b\x08\x00")
    with pytest.raises(IdxError, match="bytes"):
        parse_idx(idx_bytes(np.zeros((4, 4), dtype=np.uint8))[:-1])
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(5, dtype=np.uint8))))
    assert read_idx(path).tolist() == [0, 1, 2, 3, 4]


def _fake_fashion_mnist(folder, n_train=30, n_test=8):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for stem, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        (folder / f"{stem}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (folder / f"{stem}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
        arrays[stem] = (images, labels)
    return arrays


def test_smoke_prepare_holds_out_the_last_training_images(tmp_path):
    arrays = _fake_fashion_mnist(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    info = prep.prepare_smoke(out, tmp_path / "src", val_examples=10)
    assert info["counts"] == {"train": 20, "val": 10, "test": 8}
    images, labels = arrays["train"]
    assert np.array_equal(read_idx(out / "val-images-idx3-ubyte"), images[20:])
    assert np.array_equal(read_idx(out / "train-labels-idx1-ubyte"), labels[:20])
    assert np.array_equal(read_idx(out / "test-images-idx3-ubyte"), arrays["t10k"][0])


def test_smoke_prepare_names_the_missing_file(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(UserError, match="train-images-idx3-ubyte"):
        prep.prepare("smoke", tmp_path, source=tmp_path / "src")


# --- sampling, model, crops --------------------------------------------------------------------

def test_steps_walk_through_epochs_and_split_across_ranks():
    n, batch = 50, 8
    epoch = np.concatenate([step_indices(n, seed=3, step=s, batch_size=batch) for s in range(n // batch)])
    assert len(set(epoch.tolist())) == len(epoch)  # no repeat within an epoch
    assert not np.array_equal(step_indices(n, seed=3, step=6, batch_size=batch), epoch[:batch])  # epoch 2 reshuffles
    ranks = [step_indices(n, seed=3, step=2, batch_size=batch, rank=r, world_size=2) for r in (0, 1)]
    assert np.array_equal(np.concatenate(ranks), step_indices(n, seed=3, step=2, batch_size=batch))


def test_posemb_is_sincos_over_the_grid():
    pe = posemb_sincos_2d(2, 3, 8)
    assert pe.shape == (6, 8)
    assert torch.allclose(pe[0], torch.tensor([0.0, 0, 1, 1, 0, 0, 1, 1]))  # position (0, 0)
    assert torch.allclose(pe[1, :2], torch.sin(torch.tensor([1.0, 1e-4])))  # x = 1, omega = 1 and 1/10000


@pytest.mark.parametrize("pool", ["gap", "cls", "map"])
@pytest.mark.parametrize("flags", [{}, {"glu": True}, {"post_ln": True}])
def test_vit_variants_build_and_start_at_uniform_logits(pool, flags):
    cfg = ViTConfig(image_size=16, channels=3, patch_size=8, n_classes=5, pool=pool,
                    encoder=TINY.model_copy(update=flags))
    model = ViT(cfg)
    logits = model(torch.randn(4, 3, 16, 16))
    assert logits.shape == (4, 5) and torch.count_nonzero(logits) == 0  # zero-initialised head
    names = {n for n, _ in model.named_parameters()}
    assert any(".glu." in n for n in names) == bool(flags.get("glu"))
    assert ("encoder.norm.weight" in names) != bool(flags.get("post_ln"))
    assert ("map.probe" in names) == (pool == "map") and ("cls" in names) == (pool == "cls")


def test_registered_variants_differ_only_by_their_flag():
    base = WORKLOADS.get("vit").presets["full"].config.model
    assert base.encoder.width == 384 and base.encoder.depth == 12 and base.patch_size == 16  # ViT-S/16
    assert WORKLOADS.get("vit_glu").presets["full"].config.model == base.model_copy(
        update={"encoder": base.encoder.model_copy(update={"glu": True})})
    assert WORKLOADS.get("vit_map").presets["smoke"].config.model.pool == "map"
    assert WORKLOADS.get("vit_post_ln").presets["small"].config.model.encoder.post_ln
    assert WORKLOADS.get("vit").presets["full"].target.value == 0.77309


def test_random_resized_crop_stays_inside_with_area_and_ratio_in_range():
    rng = np.random.default_rng(0)
    for _ in range(200):
        left, top, right, bottom = random_resized_crop_box(300, 200, rng)
        w, h = right - left, bottom - top
        assert 0 <= left < right <= 300 and 0 <= top < bottom <= 200
        assert 0.07 <= w * h / 60_000 <= 1.0 and 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02
    assert random_resized_crop_box(1000, 10, rng) == (493, 0, 506, 10)  # fallback: centre, ratio clamped
    assert center_crop_box(341, 256, 0.875) == (58, 16, 282, 240)  # the 224 of 256


# --- ImageNet folders -> image shards -> batches ---------------------------------------------

CLASSES = ("n01440764", "n01443537", "n01484850")


def _jpeg(path, size, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="JPEG")


def _fake_imagenet(root, flat_val=False):
    for c, wnid in enumerate(CLASSES):
        color = tuple(int(v) for v in np.eye(3, dtype=int)[c] * 200)
        for i in range(4):
            _jpeg(root / "train" / wnid / f"{wnid}_{i}.JPEG", (300 + 7 * i, 400), color)
        name = f"ILSVRC2012_val_{c:08d}"
        _jpeg(root / "val" / ("" if flat_val else wnid) / f"{name}.JPEG", (64, 48), color)
        _jpeg(root / "v2" / str(c) / f"v2_{c}.jpeg", (50, 50), color)
    if flat_val:
        rows = [f"ILSVRC2012_val_{c:08d},{wnid} 1 2 3 4" for c, wnid in enumerate(CLASSES)]
        (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")


@pytest.mark.parametrize("flat_val", [False, True])
def test_imagenet_converter_writes_shards_with_labels_and_bounded_size(tmp_path, flat_val):
    _fake_imagenet(tmp_path / "imagenet", flat_val)
    workers = 2 if flat_val else 1  # a pool of converting processes, or none
    out = prep.prepare("full", tmp_path / "data", source=tmp_path / "imagenet", workers=workers)
    assert prep.is_ready("full", tmp_path / "data")
    train, val, test = (ImageShards(out, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (12, 3, 3)
    assert train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and val.labels.tolist() == [0, 1, 2]
    image = train.image(5)
    assert min(image.size) == 256 and image.size[1] > 256  # shorter side stored at 256, aspect kept
    assert np.asarray(image).mean(axis=(0, 1)).argmax() == 1  # class 1 is green
    assert test.labels.tolist() == [0, 1, 2]


def test_data_prepare_command_converts_an_imagenet_folder(tmp_path):
    """`algobench data prepare vit --size full --source DIR`, as a user runs it."""
    from tests.helpers import cli

    _fake_imagenet(tmp_path / "imagenet", flat_val=True)
    res = cli("data", "prepare", "vit", "--size", "full", "--source", str(tmp_path / "imagenet"),
              "--data-dir", str(tmp_path / "data"))
    assert res.returncode == 0, res.stderr
    assert prep.is_ready("full", tmp_path / "data")
    assert [len(ImageShards(tmp_path / "data" / "vit" / "full", s)) for s in ("train", "val", "test")] == [12, 3, 3]


def test_imagenet_needs_a_source_and_the_standard_folders(tmp_path):
    with pytest.raises(UserError, match="--source"):
        prep.prepare("full", tmp_path)
    (tmp_path / "imagenet" / "train").mkdir(parents=True)
    with pytest.raises(UserError, match="train/ and val/"):
        prep.prepare("full", tmp_path, source=tmp_path / "imagenet")


def _tiny_imagenet_workload(data_dir, size="full", workers=0):
    spec = WORKLOADS.get("vit")
    cfg = spec.presets[size].config.model_copy(update={
        "model": ViTConfig(image_size=32, patch_size=16, n_classes=3, encoder=TINY), "loader_workers": workers,
        "eval_batch_size": 2})
    preset = spec.presets[size].model_copy(update={"config": cfg})
    return spec.build_torch(preset=preset, size=size, data_dir=data_dir, backend=TorchBackend.choose("cpu"))


def test_imagenet_batches_are_deterministic_crops_and_evaluate_counts_every_image(tmp_path):
    _fake_imagenet(tmp_path / "imagenet")
    prep.prepare("full", tmp_path / "data", source=tmp_path / "imagenet", workers=1)
    wl = _tiny_imagenet_workload(tmp_path / "data", workers=2)
    assert wl.eval_splits == ("val", "test")
    first = next(wl.train_batches(seed=1, batch_size=4))
    again = next(wl.train_batches(seed=1, batch_size=4))
    other = next(wl.train_batches(seed=2, batch_size=4))
    assert first["inputs"].shape == (4, 3, 32, 32) and first["inputs"].dtype == torch.uint8
    assert torch.equal(first["inputs"], again["inputs"]) and torch.equal(first["targets"], again["targets"])
    assert not torch.equal(first["targets"], other["targets"]) or not torch.equal(first["inputs"], other["inputs"])
    for images, labels in ((first["inputs"], first["targets"]),):
        colour = images.float().mean(dim=(2, 3)).argmax(dim=1)  # each class has its own colour
        assert torch.equal(colour, labels)
    model = wl.init_model(seed=0)
    metrics = wl.evaluate(model, "val")
    assert metrics["accuracy"] == pytest.approx(1 / 3)  # zero head: every logit ties, argmax is class 0
    assert metrics["loss"] == pytest.approx(math.log(3), rel=1e-5)


def test_imagenet_without_v2_evaluates_val_only(tmp_path):
    _fake_imagenet(tmp_path / "imagenet")
    for path in (tmp_path / "imagenet" / "v2").rglob("*.jpeg"):
        path.unlink()
    for sub in sorted((tmp_path / "imagenet" / "v2").iterdir()):
        sub.rmdir()
    (tmp_path / "imagenet" / "v2").rmdir()
    prep.prepare("small", tmp_path / "data", source=tmp_path / "imagenet", workers=1)
    wl = _tiny_imagenet_workload(tmp_path / "data", size="small")
    assert wl.eval_splits == ("val",)
    assert min(ImageShards(wl.folder, "train").image(0).size) == 72


# --- the metric on a hand-made case ----------------------------------------------------------

class _Constant(torch.nn.Module):
    """Logits favouring class 0 by `margin` whatever the image."""

    def __init__(self, n_classes: int, margin: float) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(n_classes))
        with torch.no_grad():
            self.logits[0] = margin

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


def test_accuracy_and_loss_on_a_hand_made_case(tmp_path):
    _fake_fashion_mnist(tmp_path / "src", n_train=20, n_test=8)
    (tmp_path / "data" / "vit" / "smoke").mkdir(parents=True)
    prep.prepare_smoke(tmp_path / "data" / "vit" / "smoke", tmp_path / "src", val_examples=10)
    preset = WORKLOADS.get("vit").presets["smoke"]
    preset = preset.model_copy(update={"config": preset.config.model_copy(update={"eval_batch_size": 3})})
    wl = VitWorkload(name="vit", size="smoke", preset=preset, backend=TorchBackend.choose("cpu"),
                     data_dir=tmp_path / "data")
    labels = read_idx(tmp_path / "data" / "vit" / "smoke" / "val-labels-idx1-ubyte")
    metrics = wl.evaluate(_Constant(10, margin=2.0), "val")
    p0 = math.exp(2) / (math.exp(2) + 9)
    zeros = (labels == 0).mean()
    assert metrics["accuracy"] == pytest.approx(zeros)
    assert metrics["loss"] == pytest.approx(-(zeros * math.log(p0) + (1 - zeros) * math.log((1 - p0) / 9)))


def test_vit_settings_are_frozen():
    cfg = WORKLOADS.get("vit").presets["smoke"].config
    assert isinstance(cfg, VitSettings)
    with pytest.raises(Exception):
        cfg.eval_examples = 1


# --- every registered variant trains, evaluates and has its own calibrated target ------------

VIT_NAMES = [n for n in WORKLOADS.names() if n.split("_")[0] == "vit"]


def test_the_registry_holds_every_variant():
    assert sorted(VIT_NAMES) == sorted(v.name for v in VARIANTS)
    for v in VARIANTS:
        assert "provisional" not in WORKLOADS.get(v.name).presets["smoke"].how_target_was_set


@pytest.mark.parametrize("name", VIT_NAMES)
def test_every_variant_trains_a_few_steps_at_smoke_size(name, data_dir):
    from tests.helpers import run_few_steps

    evals, end = run_few_steps(name, data_dir, steps=4)
    assert end.status == "not_reached" and end.reason == "max steps", end.traceback
    metrics = evals[-1].metrics
    assert evals[-1].step == 4 and 0.0 <= metrics["val_accuracy"] <= 1.0 and math.isfinite(metrics["val_loss"])


# --- calibration: a baseline reaches the smoke target ----------------------------------------

@pytest.mark.slow
def test_nadamw_reaches_the_vit_smoke_target(data_dir, one_thread):
    """NAdamW's defaults (seed 1) reach the smoke target (0.86) at step 1,050 (README); the budget is
    lifted so that a loaded machine fails only on steps, which are deterministic."""
    from algobench.specs import RunOptions, TrialConfig
    from tests.helpers import run

    cfg = TrialConfig(workload="vit", size="smoke", submission="nadamw", seed=1, data_dir=data_dir,
                      options=RunOptions(device="cpu", max_steps=1_300, budget_s=100_000))
    evals, end = run(cfg)
    assert end.status == "reached", (end.reason, [e.metrics["val_accuracy"] for e in evals])
    assert end.steps_to_target <= 1_150
    assert evals[-1].metrics["val_accuracy"] >= WORKLOADS.get("vit").presets["smoke"].target.value
