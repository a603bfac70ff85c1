"""The data layer: root resolution, downloads, real datasets, and the offline stand-in."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from common import data
from common.data import (
    DataError,
    DataUnavailable,
    StandInImages,
    available_weights,
    data_file,
    fetch_file,
    network_reachable,
    open_text,
    vision_dataset,
)

TO_TENSOR = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


def offline_args(root: Path) -> SimpleNamespace:
    return SimpleNamespace(data_dir=root, offline=True)


# --------------------------------------------------------------------------- the stand-in
def test_offline_empty_root_gives_an_announced_stand_in(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LESSONS_REQUIRE_REAL_DATA", raising=False)
    train = vision_dataset("FashionMNIST", offline_args(tmp_path), train=True, transform=TO_TENSOR)
    test = vision_dataset("FashionMNIST", offline_args(tmp_path), train=False)
    assert isinstance(train, StandInImages) and isinstance(test, StandInImages)
    assert (len(train), len(test)) == (60_000, 10_000)
    image, label = train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert isinstance(label, int) and 0 <= label < 10
    assert train.classes[0] == "T-shirt/top" and len(train.classes) == 10
    notices = [line for line in capsys.readouterr().out.splitlines() if "NOTICE" in line]
    assert len(notices) == 1, "announced once, not once per split"
    assert "FashionMNIST" in notices[0] and "stand-in" in notices[0]
    assert "To get the real data" in notices[0]


def test_the_stand_in_is_deterministic_and_shaped_like_the_real_thing():
    first, second = StandInImages("MNIST", length=50), StandInImages("MNIST", length=50)
    assert torch.equal(first.data[:], second.data[:])
    assert first.data.shape == (50, 28, 28) and first.data.dtype == torch.uint8
    assert first.targets.tolist() == second.targets.tolist()
    assert first[3][0].mode == "L"
    colour = StandInImages("CIFAR10", train=False, length=8)
    assert colour.data.shape == (8, 32, 32, 3)
    assert colour[0][0].mode == "RGB" and colour[0][0].size == (32, 32)
    with pytest.raises(IndexError):
        colour[8]


def test_the_stand_in_is_learnable_but_not_trivial():
    """A linear classifier beats chance by far but stays well below 1, as on real data, so a
    lesson run offline shows learning, not a suspicious 100 %."""
    torch.manual_seed(0)
    train = StandInImages("FashionMNIST", length=6000)
    test = StandInImages("FashionMNIST", train=False, length=1000)
    x_train = train.data.flatten(1).float() / 255
    x_test = test.data.flatten(1).float() / 255
    model = torch.nn.Linear(784, 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        for start in range(0, len(x_train), 100):
            batch = slice(start, start + 100)
            loss = torch.nn.functional.cross_entropy(model(x_train[batch]), train.targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        losses.append(loss.item())
    accuracy = (model(x_test).argmax(1) == test.targets).float().mean().item()
    assert losses[-1] < losses[0]
    assert 0.4 < accuracy < 0.9, accuracy  # chance is 0.1
    wrong_labels = (train.targets != train.data.classes).float().mean().item()
    assert 0.07 < wrong_labels < 0.11  # about 0.9 * LABEL_NOISE: a random label can be right


def test_the_stand_in_draws_only_the_images_used():
    images = StandInImages("MNIST")
    first = images[5][0]
    assert len(images.data.chunks) == 1  # one item drew one chunk, not 60,000 images
    assert images.data[:100].shape == (100, 28, 28) and len(images.data.chunks) == 1
    assert images.data[-1].shape == (28, 28) and len(images.data.chunks) == 2
    assert images.data[10:10].shape == (0, 28, 28)
    assert images.data.shape == (60_000, 28, 28)
    assert (np.asarray(first) == images.data[5].numpy()).all()


def test_requiring_real_data_turns_the_fallback_into_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LESSONS_REQUIRE_REAL_DATA", "1")
    with pytest.raises(DataUnavailable, match="LESSONS_REQUIRE_REAL_DATA=1"):
        vision_dataset("MNIST", offline_args(tmp_path))


def test_unreachable_network_falls_back_fast(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LESSONS_REQUIRE_REAL_DATA", raising=False)
    monkeypatch.setattr(data, "network_reachable", lambda url, timeout=5.0: False)
    started = time.monotonic()
    dataset = vision_dataset("CIFAR10", SimpleNamespace(data_dir=tmp_path, offline=False))
    assert time.monotonic() - started < 10
    assert isinstance(dataset, StandInImages) and len(dataset) == 50_000
    assert "network is unreachable" in capsys.readouterr().out


class FakeWeights:
    """A torchvision weights enum as `available_weights` uses it: a url, and `get_state_dict`,
    which downloads the file into torch's hub cache (here: writes it, or fails)."""

    def __init__(self, url: str, failure: Exception | None = None):
        self.url, self.failure, self.downloads = url, failure, 0

    def get_state_dict(self, progress: bool):
        self.downloads += 1
        if self.failure is not None:
            raise self.failure
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(self.url).name
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.save({}, cached)


@pytest.mark.parametrize(
    "offline, reachable, failure, expected",
    [
        (True, True, None, "downloads are off"),
        (False, False, None, "the network is unreachable"),
        (False, True, OSError("HTTP Error 503:\n  Service Unavailable"), "the download failed "
         "(HTTP Error 503: Service Unavailable)"),
        (False, True, None, None),  # downloaded: no notice, and the next call finds the cache
    ],
)  # fmt: skip
def test_pretrained_weights_or_an_announced_none(
    offline, reachable, failure, expected, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(data, "network_reachable", lambda url, timeout=5.0: reachable)
    weights = FakeWeights("https://example.org/models/net-1234.pth", failure)
    got = available_weights(weights, offline=offline, name="net")
    printed = capsys.readouterr().out
    if expected is None:
        assert got is weights and weights.downloads == 1 and "NOTICE" not in printed
        assert available_weights(weights, offline=True, name="net") is weights  # the cache
        assert weights.downloads == 1
    else:
        assert got is None
        assert printed.strip() == f"NOTICE: net ImageNet weights unavailable ({expected}): " \
            "using random weights"  # fmt: skip


def test_corrupt_archives_are_an_error_not_a_fallback(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"not really gzip")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz is corrupt"):
        vision_dataset("MNIST", offline_args(tmp_path))


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'ImageNet'"):
        vision_dataset("ImageNet", offline_args(tmp_path))


# --------------------------------------------------------------------------- downloads
@pytest.fixture
def file_server(tmp_path):
    """A web server on 127.0.0.1 serving tmp_path/served; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_file_downloads_and_verifies(file_server, tmp_path):
    served, base_url = file_server
    content = b"fixed acidity;volatile acidity\n7.0;0.27\n"
    (served / "wine.csv").write_bytes(content)
    md5 = hashlib.md5(content).hexdigest()
    root = tmp_path / "root"
    path = fetch_file(root, "tabular/wine.csv", url=f"{base_url}/wine.csv", md5=md5)
    assert path == root / "tabular" / "wine.csv" and path.read_bytes() == content
    # Present files are used as they are: no second download (the server could be gone).
    assert fetch_file(root, "tabular/wine.csv", url="http://127.0.0.1:9/x", offline=True) == path


def test_fetch_file_rejects_a_bad_checksum_and_leaves_nothing(file_server, tmp_path):
    served, base_url = file_server
    (served / "names.csv").write_bytes(b"tampered")
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch_file(tmp_path, "names.csv", url=f"{base_url}/names.csv", md5="0" * 32)
    assert list(tmp_path.glob("names.csv*")) == []
    assert list(tmp_path.glob(".names.csv*")) == []


def test_fetch_file_offline_or_unreachable(tmp_path):
    with pytest.raises(DataUnavailable, match="downloads are off"):
        fetch_file(tmp_path, "a.csv", url="http://127.0.0.1:9/a.csv", offline=True)
    with pytest.raises(DataUnavailable, match="network is unreachable"):
        fetch_file(tmp_path, "a.csv", url=f"http://127.0.0.1:{closed_port()}/a.csv")


def test_data_file_gives_the_file_or_announces_the_stand_in(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LESSONS_REQUIRE_REAL_DATA", raising=False)
    args = offline_args(tmp_path)
    url = "https://example.org/wine.csv"
    assert data_file(args, "dlwpt/wine.csv", url=url, name="wine") is None
    notice = capsys.readouterr().out
    assert notice.startswith("NOTICE: wine (dlwpt/wine.csv) is not under") and url in notice
    assert data.stand_ins_used() == ["wine"]
    (tmp_path / "dlwpt").mkdir()
    (tmp_path / "dlwpt" / "wine.csv").write_text("1;2\n", encoding="utf-8")
    assert data_file(args, "dlwpt/wine.csv", url=url) == tmp_path / "dlwpt" / "wine.csv"
    assert data_file(args, "dlwpt/other.csv", url=url) is None
    assert "NOTICE: dlwpt/other.csv is not under" in capsys.readouterr().out
    monkeypatch.setenv("LESSONS_REQUIRE_REAL_DATA", "1")
    with pytest.raises(DataUnavailable, match="forbids the stand-in"):
        data_file(args, "dlwpt/missing.csv", url=url)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # free now, and nothing listens on it once closed


def test_network_reachable(file_server):
    _, base_url = file_server
    assert network_reachable(base_url)
    started = time.monotonic()
    assert not network_reachable(f"http://127.0.0.1:{closed_port()}/", timeout=2)
    assert not network_reachable("https://no-such-host.invalid/file", timeout=2)
    assert time.monotonic() - started < 10


def test_open_text_reads_plain_and_gzip(tmp_path):
    (tmp_path / "a.txt").write_text("hello\n", encoding="utf-8")
    with gzip.open(tmp_path / "b.csv.gz", "wt") as file:
        file.write("1,2\n")
    with open_text(tmp_path / "a.txt") as file:
        assert file.read() == "hello\n"
    with open_text(tmp_path / "b.csv.gz") as file:
        assert file.read() == "1,2\n"
    with pytest.raises(DataError, match="cannot read"):
        open_text(tmp_path / "missing.csv")


# --------------------------------------------------------------------------- the real data
@pytest.mark.real_data
@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST"])
def test_real_mnist_family_loads_from_the_data_root(name, real_data_dir):
    args = SimpleNamespace(data_dir=real_data_dir, offline=True)
    train = vision_dataset(name, args, train=True, transform=TO_TENSOR)
    test = vision_dataset(name, args, train=False)
    assert not isinstance(train, StandInImages) and not isinstance(test, StandInImages)
    assert (len(train), len(test)) == (60_000, 10_000)
    image, label = train[0]
    assert image.shape == (1, 28, 28) and 0 <= label < 10
    assert train.data.dtype == torch.uint8
    expected_first_label = {"MNIST": 5, "FashionMNIST": 9}[name]
    assert label == expected_first_label


@pytest.mark.real_data
def test_a_read_only_data_root_is_left_untouched(real_data_dir, tmp_path, monkeypatch):
    """Archives in a read-only folder (a shared copy) are extracted into the cache instead."""
    raw = tmp_path / "readonly" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for archive in (real_data_dir / "MNIST" / "raw").glob("*.gz"):
        (raw / archive.name).symlink_to(archive.resolve())
    raw.chmod(0o555)
    monkeypatch.setattr(data, "EXTRACTION_CACHE", tmp_path / "cache")
    try:
        args = SimpleNamespace(data_dir=tmp_path / "readonly", offline=True)
        train = vision_dataset("MNIST", args, train=True)
        assert not isinstance(train, StandInImages) and len(train) == 60_000
        assert sorted(path.name for path in raw.iterdir()) == sorted(
            path.name for path in (real_data_dir / "MNIST" / "raw").glob("*.gz")
        )
        assert list((tmp_path / "cache").rglob("train-images-idx3-ubyte"))
    finally:
        raw.chmod(0o755)
