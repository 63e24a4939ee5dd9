"""Data sets (Fashion-MNIST, ImageFolder, errors) and the proxy trainer."""
from __future__ import annotations

import copy
import gzip
import hashlib

import numpy as np
import pytest
import torch

from fatnas.estimate.data import DATASETS, FASHION_MNIST_DIR, DataError, load_dataset, prepare_images, proxy_images
from fatnas.estimate.proxy import LR_REFERENCE_BATCH, ProxyResult, ProxySettings, crop_oversized_kernels, train_proxy
from fatnas.model.config import FATConfig
from fatnas.model.network import FAT

TINY = FATConfig(widths=[16, 16, 32, 32], depths=1, heads=[1, 1, 2, 2], windows=[2, 1, 1, 1])
needs_fashion = pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(),
    reason=f"{FASHION_MNIST_DIR} absent (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture(scope="module")
def fashion():
    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip(f"{FASHION_MNIST_DIR} absent (apt-get install dataset-fashion-mnist)")
    return load_dataset("fashion-mnist", val_images=500, seed=0)


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def _write_idx(path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


# --- data ---------------------------------------------------------------------------------


@needs_fashion
def test_fashion_mnist_shapes_and_dtypes(fashion):
    assert fashion.name == "fashion-mnist"
    assert fashion.train_x.shape == (59500, 1, 28, 28) and fashion.train_x.dtype == torch.uint8
    assert fashion.val_x.shape == (500, 1, 28, 28) and fashion.val_x.dtype == torch.uint8
    assert fashion.train_y.dtype == fashion.val_y.dtype == torch.int64
    assert (fashion.num_classes, fashion.in_chans, fashion.image_size) == (10, 1, (28, 28))
    assert set(fashion.val_y.tolist()) == set(range(10))
    assert 0.25 < fashion.mean[0] < 0.32 and 0.3 < fashion.std[0] < 0.4


@needs_fashion
def test_split_is_disjoint_and_seeded(fashion):
    train, val = set(fashion.train_indices.tolist()), set(fashion.val_indices.tolist())
    assert not train & val and len(train | val) == 60000
    again = load_dataset("fashion-mnist", val_images=500, seed=0)
    assert torch.equal(again.val_indices, fashion.val_indices)
    assert _digest(again.val_x) == _digest(fashion.val_x)
    assert _digest(again.train_x[:1000]) == _digest(fashion.train_x[:1000])
    other = load_dataset("fashion-mnist", val_images=500, seed=1)
    assert not torch.equal(other.val_indices, fashion.val_indices)
    assert _digest(other.val_x) != _digest(fashion.val_x)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_gzipped_or_not(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 28, 28), dtype=np.uint8)
    labels = np.arange(30) % 10
    suffix = ".gz" if gz else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, gz)
    data = load_dataset("fashion-mnist", tmp_path, val_images=5, seed=3)
    assert data.train_x.shape == (25, 1, 28, 28) and data.val_x.shape == (5, 1, 28, 28)
    assert torch.equal(data.val_x[:, 0], torch.from_numpy(images[data.val_indices.numpy()]))
    assert torch.equal(data.train_y, torch.from_numpy(labels[data.train_indices.numpy()]))


def test_missing_fashion_dir_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", tmp_path / "nowhere")
    message = str(err.value)
    assert "\n" not in message and "apt-get install dataset-fashion-mnist" in message
    assert "--data-dir" in message


def test_truncated_idx_file_is_a_data_error(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + b"\x00\x00")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]))
    with pytest.raises(DataError):
        load_dataset("fashion-mnist", tmp_path)


def test_unknown_name_lists_accepted_ones():
    with pytest.raises(DataError) as err:
        load_dataset("mnist-ish")
    assert all(name in str(err.value) for name in DATASETS)


def test_cifar10_and_imagefolder_need_a_folder(tmp_path):
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("imagefolder")
    with pytest.raises(DataError, match="no images"):
        load_dataset("imagefolder", tmp_path)


def test_imagefolder_loads_and_resizes(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    for c, name in enumerate(("cat", "dog")):
        (tmp_path / name).mkdir()
        for i in range(4):
            color = (255 * c, 40 * i, 100)
            Image.new("RGB", (20 + 7 * i, 30), color).save(tmp_path / name / f"{i}.png")
    data = load_dataset("imagefolder", tmp_path, val_images=2, seed=0)
    assert data.train_x.shape == (6, 3, 64, 64) and data.train_x.dtype == torch.uint8
    assert data.val_x.shape == (2, 3, 64, 64)
    assert (data.num_classes, data.in_chans, data.image_size) == (2, 3, (64, 64))
    assert sorted(data.train_y.tolist() + data.val_y.tolist()) == [0] * 4 + [1] * 4
    with pytest.raises(DataError, match="val_images"):
        load_dataset("imagefolder", tmp_path, val_images=8)


def test_images_are_normalized_and_resized_only_when_needed():
    images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
    mean, std = torch.full((1, 1, 1, 1), 0.5), torch.full((1, 1, 1, 1), 0.25)
    same = prepare_images(images, mean, std, 28)
    assert same.dtype == torch.float32 and same.shape == (10, 1, 28, 28)
    assert torch.allclose(same, (images.float() / 255 - 0.5) / 0.25)
    assert prepare_images(images, mean, std, 32).shape == (10, 1, 32, 32)


def test_proxy_images_batch_channels_last_views():
    images = torch.randint(0, 256, (10, 3, 28, 28), dtype=torch.uint8)
    mean, std = torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25)
    prepared = proxy_images(images, torch.arange(10), mean, std, 32)
    x, y = prepared.batch(torch.tensor([9, 8, 7]))
    assert x.shape == (3, 3, 32, 32) and x.is_contiguous(memory_format=torch.channels_last)
    assert y.tolist() == [9, 8, 7]
    assert torch.equal(x, prepare_images(images[[9, 8, 7]], mean, std, 32))
    assert torch.allclose(prepared.fill, torch.full((3,), -2.0))


def test_augmented_batches_are_shifted_and_flipped_crops():
    images = torch.randint(1, 256, (6, 1, 16, 16), dtype=torch.uint8)
    mean, std = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
    prepared = proxy_images(images, torch.arange(6), mean, std, 16)
    idx = torch.arange(6)
    x, y = prepared.augmented_batch(idx, 3, torch.Generator().manual_seed(0))
    again, _ = prepared.augmented_batch(idx, 3, torch.Generator().manual_seed(0))
    assert torch.equal(x, again) and y.tolist() == list(range(6))
    source = images.float() / 255
    padded = torch.nn.functional.pad(source, (3, 3, 3, 3))
    for i in range(6):  # each output is one of the 2 x 7 x 7 crops of the zero-padded image
        crops = [padded[i, :, r:r + 16, c:c + 16] for r in range(7) for c in range(7)]
        crops += [crop.flip(-1) for crop in crops]
        assert any(torch.allclose(x[i], crop) for crop in crops)
    assert not torch.allclose(x, source)


# --- proxy --------------------------------------------------------------------------------


def test_cropping_oversized_kernels_changes_nothing():
    torch.manual_seed(0)
    model = FAT(TINY.replace(in_chans=1, num_classes=10)).eval()
    reference = copy.deepcopy(model)
    assert crop_oversized_kernels(model, 28, 1) > 0
    x = torch.randn(3, 1, 28, 28)
    out, ref = model(x), reference(x)
    assert torch.allclose(out, ref, atol=1e-5)
    out.square().sum().backward()
    ref.square().sum().backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-4, rtol=1e-3)


def test_settings_round_trip_and_validation():
    settings = ProxySettings(res=32, seed=7)
    assert ProxySettings(**settings.to_dict()) == settings
    assert settings.images_per_trial == settings.train_images * settings.epochs
    with pytest.raises(ValueError, match="batch_size"):
        ProxySettings(batch_size=0)
    with pytest.raises(ValueError, match="device"):
        ProxySettings(device="tpu")


def test_learning_rate_scales_with_the_square_root_of_the_batch():
    settings = ProxySettings(lr=1e-3)
    assert settings.scaled_lr(LR_REFERENCE_BATCH) == pytest.approx(1e-3)
    assert settings.scaled_lr(4 * LR_REFERENCE_BATCH) == pytest.approx(2e-3)
    assert ProxySettings(res=28).crop_padding == 4 and ProxySettings(res=56).crop_padding == 7


@needs_fashion
def test_train_proxy_is_deterministic_and_reports(fashion):
    settings = ProxySettings(train_images=256, batch_size=32, eval_every=4, val_images=200, seed=5)
    rng_before = torch.get_rng_state()
    first = train_proxy(TINY, fashion, settings)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert isinstance(first, ProxyResult) and 0.0 <= first.accuracy <= 1.0
    assert [n for n, _ in first.curve] == [64, 128, 192, 256]
    assert first.images_seen == 256 and not first.pruned
    assert first.accuracy == first.curve[-1][1] and first.images_per_second > 0
    second = train_proxy(TINY, fashion, settings)
    assert second.curve == first.curve and second.train_loss == first.train_loss
    assert second.val_losses == first.val_losses and len(first.val_losses) == 4
    assert first.val_loss == first.val_losses[-1] > 0 and first.sotl_e > 0
    (n0, a0), (n1, a1) = first.curve[-2:]
    assert first.curve_slope == pytest.approx(1000 * (a1 - a0) / (n1 - n0))

    calls: list[tuple[int, float]] = []
    pruned = train_proxy(TINY, fashion, settings, report=lambda i, acc: calls.append((i, acc)) or True)
    assert pruned.pruned and pruned.images_seen == 64 < first.images_seen
    assert calls == [(0, first.curve[0][1])] and pruned.curve == first.curve[:1]


@needs_fashion
@pytest.mark.parametrize("channels_last", [True, False])
def test_augmented_training_is_deterministic_in_either_layout(fashion, channels_last):
    settings = ProxySettings(res=32, train_images=128, eval_every=2, val_images=100, augment=True,
                             channels_last=channels_last, seed=3)
    first, second = train_proxy(TINY, fashion, settings), train_proxy(TINY, fashion, settings)
    assert first.curve == second.curve and first.sotl_e == second.sotl_e
    plain = train_proxy(TINY, fashion, settings.replace(augment=False))
    assert plain.sotl_e != first.sotl_e


@needs_fashion
def test_tiny_config_learns(fashion):
    settings = ProxySettings(train_images=2048, batch_size=32, lr=3e-3, eval_every=1, val_images=500)
    result = train_proxy(TINY, fashion, settings)
    assert result.accuracy >= 0.4, result


@needs_fashion
def test_official_test_split_is_kept_apart(fashion):
    assert fashion.test_x.shape == (10000, 1, 28, 28) and fashion.test_y.shape == (10000,)
    assert fashion.eval_split("test")[0] is fashion.test_x and fashion.eval_split("val")[0] is fashion.val_x
    with pytest.raises(DataError, match="accepted: val, test"):
        fashion.eval_split("train")


def test_a_data_set_without_test_split_says_so(tmp_path):
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, size=(20, 28, 28)), False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(20) % 10, False)
    data = load_dataset("fashion-mnist", tmp_path, val_images=5)
    assert data.test_x is None
    with pytest.raises(DataError, match="no test split"):
        data.eval_split("test")
    with pytest.raises(ValueError, match="eval_split"):
        ProxySettings(eval_split="train")
