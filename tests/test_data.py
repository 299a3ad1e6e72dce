import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lwt import data


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    magic = 2048 + array.ndim
    header = magic.to_bytes(4, "big") + b"".join(
        d.to_bytes(4, "big") for d in array.shape
    )
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        Path(str(path) + ".gz").write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


@pytest.fixture
def tiny_counts(monkeypatch):
    monkeypatch.setitem(data.COUNTS, "mnist", (6, 4))
    monkeypatch.setitem(data.COUNTS, "rotmnist", (5, 4))
    monkeypatch.setitem(data.COUNTS, "fashion_mnist", (6, 4))
    monkeypatch.setitem(data.COUNTS, "cifar10", (10, 5))


def make_mnist(root: Path, folder: str = "MNIST", gz: bool = False) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("t10k", 4)):
        write_idx(
            root / folder / "raw" / f"{split}-images-idx3-ubyte",
            rng.integers(0, 256, (n, 28, 28)),
            gz,
        )
        write_idx(
            root / folder / "raw" / f"{split}-labels-idx1-ubyte", np.arange(n) % 10, gz
        )


def write_cifar_batch(path: Path, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    batch = {
        "batch_label": "test",
        "labels": [int(v) for v in rng.integers(0, 10, n)],
        "data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
        "filenames": [f"{i}.png" for i in range(n)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(batch, protocol=2))
    return batch


def make_cifar(root: Path) -> None:
    d = root / "cifar-10-batches-py"
    for i in range(1, 6):
        write_cifar_batch(d / f"data_batch_{i}", 2, i)
    write_cifar_batch(d / "test_batch", 5, 0)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip(tmp_path, tiny_counts, gz):
    make_mnist(tmp_path, gz=gz)
    train = data.load_dataset("mnist", True, tmp_path, download=False)
    assert train.images.shape == (6, 1, 28, 28) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert len(data.load_dataset("mnist", False, tmp_path, download=False)) == 4


def test_fashion_mnist_uses_same_reader(tmp_path, tiny_counts):
    make_mnist(tmp_path, folder="FashionMNIST")
    assert len(data.load_dataset("fashion_mnist", True, tmp_path, download=False)) == 6


def test_cifar_batches(tmp_path, tiny_counts):
    make_cifar(tmp_path)
    train = data.load_dataset("cifar10", True, tmp_path, download=False)
    assert train.images.shape == (10, 3, 32, 32)
    ref = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    assert torch.equal(train.images[0].flatten(), torch.from_numpy(ref["data"][0]))


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_tampered_cifar_pickle_is_refused(tmp_path, tiny_counts):
    make_cifar(tmp_path)
    bad = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1], "x": Evil()}
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps(bad))
    os.chdir(tmp_path)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data.load_dataset("cifar10", True, tmp_path, download=False)
    assert not (tmp_path / "pwned").exists()


def test_wrong_counts_and_shapes_rejected(tmp_path, tiny_counts, monkeypatch):
    make_cifar(tmp_path)
    monkeypatch.setitem(data.COUNTS, "cifar10", (11, 5))
    with pytest.raises(ValueError, match="expected 11"):
        data.load_dataset("cifar10", True, tmp_path, download=False)
    write_cifar_batch(tmp_path / "cifar-10-batches-py" / "test_batch", 5, 0)
    batch = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())
    batch["data"] = batch["data"][:, :100]
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(
        pickle.dumps(batch, protocol=2)
    )
    with pytest.raises(ValueError, match="expected \\(N, 3072\\)"):
        data.load_dataset("cifar10", False, tmp_path, download=False)


def test_bad_idx_rejected(tmp_path, tiny_counts):
    make_mnist(tmp_path)
    f = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    f.write_bytes(f.read_bytes()[:-1])
    with pytest.raises(ValueError, match="header says"):
        data.load_dataset("mnist", True, tmp_path, download=False)
    f.write_bytes(b"\x00\x00\x08\x99" + b"\x00" * 8)
    with pytest.raises(ValueError, match="magic"):
        data.load_dataset("mnist", True, tmp_path, download=False)


def test_missing_data_names_files_and_env(tmp_path):
    with pytest.raises(FileNotFoundError, match="LWT_DATA_DIR") as err:
        data.load_dataset("cifar10", False, tmp_path, download=False)
    assert "cifar-10-batches-py/test_batch" in str(err.value)


def test_failed_download_gives_clear_error(tmp_path, monkeypatch):
    def offline(name, root):
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(FileNotFoundError, match="MNIST/raw/t10k-images-idx3-ubyte"):
        data.load_dataset("mnist", False, tmp_path, download=True)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown"):
        data.load_dataset("imagenet")
    with pytest.raises(ValueError, match="subset"):
        data.load_dataset("mnist", subset=0)
    with pytest.raises(ValueError, match="batch_size"):
        data.BatchLoader(
            data.ImageData(torch.zeros(1, 1, 2, 2), torch.zeros(1), "mnist"), 0
        )


def test_data_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LWT_DATA_DIR", str(tmp_path))
    assert data.data_root() == tmp_path
    monkeypatch.delenv("LWT_DATA_DIR")
    assert data.data_root() == data.REPO_ROOT / "data"


def test_augment_is_crop_of_padded_and_flip():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    out = data.augment_crop_flip(x, g, pad=2)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [
            padded[i, :, a : a + 8, b : b + 8] for a in range(5) for b in range(5)
        ]
        assert any(
            torch.equal(out[i], w) or torch.equal(out[i], w.flip(2)) for w in windows
        )
    flips = data.augment_crop_flip(x, torch.Generator().manual_seed(1), pad=0)
    for i in range(2):
        assert torch.equal(flips[i], x[i]) or torch.equal(flips[i], x[i].flip(2))


def test_shift_is_a_translation_without_flips():
    """Hinton's MNIST jitter: every output is a padded window, never a mirror image."""
    x = torch.arange(64 * 1 * 6 * 6, dtype=torch.float32).view(64, 1, 6, 6) + 1
    out = data.augment_crop_flip(x, torch.Generator().manual_seed(0), pad=2, flip=False)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for i in range(64):
        hits = [(a, b) for a in range(5) for b in range(5)
                if torch.equal(out[i], padded[i, :, a : a + 6, b : b + 6])]  # fmt: skip
        assert hits
        offsets.add(hits[0])
    assert len(offsets) > 10  # really random offsets
    d = data.ImageData(torch.randint(0, 256, (20, 1, 28, 28), dtype=torch.uint8),
                       torch.arange(20) % 10, "mnist")  # fmt: skip
    loader = data.BatchLoader(d, 10, augment=True, pad=2, flip=False)
    assert (loader.pad, loader.flip) == (2, False)
    with pytest.raises(ValueError, match="pad"):
        data.BatchLoader(d, 10, pad=-1)


def test_loader_reproducible_and_normalized():
    images = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    d = data.ImageData(images, torch.arange(50) % 10, "cifar10")
    a = data.BatchLoader(d, 16, shuffle=True, augment=True, seed=3)
    b = data.BatchLoader(d, 16, shuffle=True, augment=True, seed=3)
    assert len(a) == 4 and len(data.BatchLoader(d, 16, drop_last=True)) == 3
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    x, _ = next(iter(data.BatchLoader(d, 50)))
    expected = (images.float() / 255 - 0.4914 * 1.0)[:, 0] / 0.2470
    assert torch.allclose(x[:, 0], expected, atol=1e-5)
    assert sorted(torch.cat([y for _, y in a]).tolist()) == sorted(d.labels.tolist())


def real(name: str, train: bool):
    try:
        return data.load_dataset(name, train, download=False)
    except FileNotFoundError:
        pytest.skip(f"{name} not under {data.data_root()} (set LWT_DATA_DIR)")


def test_real_mnist():
    train, test = real("mnist", True), real("mnist", False)
    assert (len(train), len(test)) == (60000, 10000)
    counts = torch.bincount(train.labels).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_real_cifar10_and_subset():
    test = real("cifar10", False)
    assert test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert test.images[0, 0, 0, :3].tolist() == [158, 159, 165]
    mean = test.images.float().div(255).mean((0, 2, 3))
    assert torch.allclose(mean, torch.tensor([0.4942, 0.4851, 0.4504]), atol=1e-4)
    sub = data.load_dataset("cifar10", False, subset=100, seed=1, download=False)
    again = data.load_dataset("cifar10", False, subset=100, seed=1, download=False)
    assert len(sub) == 100 and torch.equal(sub.labels, again.labels)


def test_get_loaders_real_mnist():
    try:
        tr, te = data.get_loaders("mnist", batch_size=64, subset=256, test_subset=100)
    except FileNotFoundError:
        pytest.skip("MNIST not available")
    assert (len(tr.data), len(te.data), tr.batch_size, te.batch_size) == (
        256,
        100,
        64,
        256,
    )
    assert tr.shuffle and not tr.augment and not te.shuffle
    x, y = next(iter(tr))
    assert (
        x.shape == (64, 1, 28, 28)
        and x.dtype == torch.float32
        and y.dtype == torch.int64
    )
    assert abs(float(x.mean())) < 0.3  # normalised with the training mean/std


def test_rotate_matches_rot90_and_keeps_the_centre():
    x = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    for k in (1, 2, 3):
        assert torch.equal(data.rotate(x, 90.0 * k), torch.rot90(x, k, (-2, -1)))
    assert torch.equal(data.rotate(x, 0.0), x)
    one = torch.zeros(1, 1, 5, 5, dtype=torch.uint8)
    one[0, 0, 2, 2] = 200  # the centre stays under any angle
    assert data.rotate(one, 37.0)[0, 0, 2, 2] == 200


def test_rotmnist_is_mnist_turned_by_fixed_angles(tmp_path, tiny_counts):
    make_mnist(tmp_path)
    plain = data.load_dataset("mnist", False, tmp_path, download=False)
    rot = data.load_dataset("rotmnist", False, tmp_path, download=False)
    again = data.load_dataset("rotmnist", False, tmp_path, download=False)
    assert torch.equal(rot.images, again.images) and rot.name == "rotmnist"
    assert torch.equal(rot.labels, plain.labels)
    assert not torch.equal(rot.images, plain.images)
    g = torch.Generator().manual_seed(0)  # the test split's seed
    angles = torch.rand(len(plain), generator=g) * 360
    assert torch.equal(rot.images, data.rotate(plain.images, angles))
    train = data.load_dataset("rotmnist", True, tmp_path, download=False)
    assert len(train) == 5  # the first COUNTS["rotmnist"][0] training images
    g = torch.Generator().manual_seed(1)  # the training split's seed
    first = data.load_dataset("mnist", True, tmp_path, download=False).images[:5]
    angles = torch.rand(5, generator=g) * 360
    assert torch.equal(train.images, data.rotate(first, angles))


def test_fetch_downloads_what_is_missing_once_and_validates(
    tmp_path, tiny_counts, monkeypatch
):
    calls = []

    def fake_download(name, root):  # stands in for torchvision's downloader
        calls.append(name)
        make_mnist(root) if name == "mnist" else make_cifar(root)

    monkeypatch.setattr(data, "_download", fake_download)
    sizes = data.fetch(tmp_path)
    assert calls == ["mnist", "cifar10"]
    assert set(sizes) == {"mnist", "cifar10"} and all(v > 0 for v in sizes.values())
    data.fetch(tmp_path)  # everything present: nothing downloaded again
    assert calls == ["mnist", "cifar10"]


def test_fetch_cli_offline_says_what_is_missing(tmp_path, monkeypatch, capsys):
    def offline(name, root):
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.warns(UserWarning, match="download of mnist failed"):
        assert data._main(["fetch", "--root", str(tmp_path)]) == 1
    assert "MNIST/raw" in capsys.readouterr().out


def test_fetch_cli_on_the_course_data(capsys, monkeypatch):
    root = data.data_root()
    if not all((root / f).exists() or (root / (f + ".gz")).exists()
               for n in data.COURSE_DATASETS for t in (True, False)
               for f in data.expected_files(n, t)):  # fmt: skip
        pytest.skip("course data not available (set LWT_DATA_DIR)")
    monkeypatch.setattr(data, "_download", lambda *a: pytest.fail("downloaded"))
    assert data._main(["fetch"]) == 0
    out = capsys.readouterr().out
    assert "mnist" in out and "cifar10" in out and "total" in out


def test_augment_false_with_a_shift_is_refused():
    """Issue 29: get_loaders(augment=False, shift=2) turned augmentation back on."""
    with pytest.raises(ValueError, match="augment=False with shift=2"):
        data.get_loaders("mnist", 128, augment=False, shift=2)


def test_validation_split_is_fixed_disjoint_and_not_augmented():
    """Issue 28: a validation split carved from the training set, the same images for
    every seed, so choices never touch the test set."""
    tr, va, te = data.get_loaders("mnist", 128, validation=5000, seed=0)
    tr2, va2, _ = data.get_loaders("mnist", 128, validation=5000, seed=3, subset=1000)
    assert len(tr.data) == 55_000 and len(va.data) == 5000 and len(te.data) == 10_000
    assert len(tr2.data) == 1000
    assert torch.equal(va.data.images, va2.data.images)  # whatever the run's seed
    assert not va.augment and not va.shuffle
    full = data.load_dataset("mnist", True, download=False)
    rest, held = data.split_validation(full, 5000)
    seen = {bytes(x.numpy()) for x in held.images}
    assert not any(bytes(x.numpy()) in seen for x in rest.images[:2000])  # disjoint
    assert torch.equal(held.images, va.data.images)
    assert len(data.get_loaders("mnist", 128)) == 2  # unchanged without validation
    for bad in (0, 60_000, 1.5, True):
        with pytest.raises(ValueError, match="validation"):
            data.split_validation(full, bad)


def test_epoch_counts_complete_passes_only():
    """A pass stopped early (calibration) does not advance the loader's epoch."""
    d = data.ImageData(torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8),
                       torch.arange(40) % 10, "cifar10")  # fmt: skip
    a = data.BatchLoader(d, 10, shuffle=True, seed=1)
    b = data.BatchLoader(d, 10, shuffle=True, seed=1)
    next(iter(a))  # a few batches only
    assert a.epoch == 0
    first = [y for _, y in a]
    assert a.epoch == 1
    assert all(torch.equal(p, q) for p, q in zip(first, [y for _, y in b], strict=True))
