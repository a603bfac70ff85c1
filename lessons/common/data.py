"""Real datasets when they can be had, a clearly announced stand-in when they cannot.

    train = vision_dataset("FashionMNIST", args, train=True, transform=v2.ToImage())
    path = data_file(args, "dlwpt/p1ch4/tabular-wine/winequality-white.csv", url=..., md5=...)

Datasets sit under the data root in torchvision's layout (`<root>/MNIST/raw/*.gz`, ...).
Downloads happen only when allowed (not `--no-download`, not `LESSONS_OFFLINE=1`) and give up
fast when the network is unreachable. When the real data cannot be had, a lesson continues on a
deterministic synthetic stand-in, announced once with how to get the real thing;
`LESSONS_REQUIRE_REAL_DATA=1` turns that fallback into an error.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import socket
import stat
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from common import LessonError
from common.settings import DATA_README, REPO_ROOT, REQUIRE_REAL_ENV, atomic_path, env_flag

NETWORK_TIMEOUT_S = 10.0
EXTRACTION_CACHE = REPO_ROOT / "data" / ".cache"


class DataError(LessonError):
    """A data file is missing, unreadable or not in the expected format."""


class DataUnavailable(DataError):
    """The real data is not on disk and cannot be downloaded now."""


_announced: set[str] = set()


def stand_ins_used() -> list[str]:
    """The datasets a stand-in has replaced so far in this process, sorted."""
    return sorted(_announced)


def use_stand_in(name: str, reason: str, how_to_get: str) -> None:
    """Announce (once per dataset and process) that a stand-in replaces `name`.

    Raises `DataUnavailable` instead when `LESSONS_REQUIRE_REAL_DATA=1`.
    """
    if env_flag(REQUIRE_REAL_ENV):  # the real-data tests: a stand-in would prove nothing
        raise DataUnavailable(f"{name}: {reason}, and {REQUIRE_REAL_ENV}=1 forbids the stand-in")
    if name in _announced:
        return
    _announced.add(name)
    print(
        f"NOTICE: {name} {reason}: using a synthetic stand-in of the same shape and classes "
        f"(numbers will differ from the real data). To get the real data: {how_to_get}"
    )


def md5sum(path: str | os.PathLike) -> str:
    """The MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def network_reachable(url: str, timeout: float = 5.0) -> bool:
    """Can we open a TCP connection to `url`'s host within `timeout` seconds?"""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def network_timeout(seconds: float = NETWORK_TIMEOUT_S):
    """Make every socket opened inside the block give up after `seconds` (urllib has no default)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def download(url: str, path: str | os.PathLike, md5: str | None = None) -> Path:
    """Download `url` to `path` atomically, checking the MD5 when one is given."""
    path = Path(path)
    request = urllib.request.Request(url, headers={"User-Agent": "pytorch-curriculum"})
    print(f"downloading {url}")
    try:
        with network_timeout(), atomic_path(path) as temp_path:
            with urllib.request.urlopen(request) as response, open(temp_path, "wb") as file:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    file.write(chunk)
            if md5 is not None and md5sum(temp_path) != md5:
                raise DataError(f"{url}: checksum mismatch (expected md5 {md5}); try again later")
    except (urllib.error.URLError, OSError) as error:
        raise DataUnavailable(f"could not download {url}: {error}") from None
    return path


def fetch_file(root, relative_path: str, *, url: str, md5=None, offline=False) -> Path:
    """`<root>/<relative_path>`, downloaded (and MD5-checked) first when missing and allowed.

    A file already present is used as it is (the lesson validates its format). Raises
    `DataUnavailable` when the file is missing and cannot be had.
    """
    path = Path(root) / relative_path
    if path.is_file():
        return path
    if offline:
        raise DataUnavailable(f"{relative_path} is not under {root} and downloads are off")
    if not network_reachable(url):
        raise DataUnavailable(f"{relative_path} is not under {root} and the network is unreachable")
    return download(url, path, md5)


def data_file(args, relative_path: str, *, url: str, md5=None, name=None, how_to_get=None):
    """The real file under `args.data_dir` (see `fetch_file`), or None once the stand-in for
    `name` (default: the relative path) has been announced."""
    try:
        return fetch_file(args.data_dir, relative_path, url=url, md5=md5, offline=args.offline)
    except DataUnavailable as error:
        reason = str(error).removeprefix(f"{relative_path} ")  # "is not under ... and ..."
        if name:
            reason = f"({relative_path}) {reason}"
        how_to_get = how_to_get or f"download {url} to <data root>/{relative_path}"
        use_stand_in(name or relative_path, reason, how_to_get)
        return None


def open_text(path: str | os.PathLike, encoding: str = "utf-8"):
    """Open a text file, transparently un-gzipping `*.gz`; unreadable files raise `DataError`."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            return gzip.open(path, "rt", encoding=encoding, newline="")
        return open(path, encoding=encoding, newline="")
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None


MNIST_DIGITS = [str(digit) for digit in range(10)]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip

# name -> (image shape H, W, C; classes; train length; test length)
VISION_SPECS = {
    "MNIST": ((28, 28, 1), MNIST_DIGITS, 60_000, 10_000),
    "FashionMNIST": ((28, 28, 1), FASHION_CLASSES, 60_000, 10_000),
    "CIFAR10": ((32, 32, 3), CIFAR10_CLASSES, 50_000, 10_000),
}


LABEL_NOISE = 0.05  # the share of stand-in labels drawn at random
CHUNK = 4096  # stand-in images are drawn this many at a time, when first needed


def _stand_in_images(classes: torch.Tensor, shape: tuple, seed: int, split_seed: int):
    """uint8 images (N x H x W x C) of the given classes, varied the way photos vary.

    Each class pattern is 80% a pattern all classes share and 20% its own, so classes overlap;
    each image is its pattern shifted by up to 2 pixels, with its own contrast and strong noise.
    Small models land between about 0.6 and 0.9 accuracy, as on real data.
    """
    height, width, channels = shape
    patterns = torch.Generator().manual_seed(seed)  # the same class patterns for both splits
    coarse = torch.rand(int(classes.max()) + 2, channels, 6, 6, generator=patterns)
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    smooth = 0.8 * smooth[:1] + 0.2 * smooth[1:]  # shared + own
    smooth = (smooth - smooth.mean()) / smooth.std() * 0.25 + 0.5
    draws = torch.Generator().manual_seed(split_seed)
    images = smooth[classes]
    shifts = torch.randint(-2, 3, (len(classes), 2), generator=draws)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            chosen = ((shifts[:, 0] == dy) & (shifts[:, 1] == dx)).nonzero().squeeze(1)
            images[chosen] = images[chosen].roll((dy, dx), dims=(2, 3))
    contrast = 0.6 + 0.8 * torch.rand(len(classes), 1, 1, 1, generator=draws)
    images.sub_(0.5).mul_(contrast).add_(0.5)
    images.add_(torch.randn(images.shape, generator=draws).mul_(0.4))
    return images.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1)


class StandInImages(Dataset):
    """A deterministic synthetic image dataset shaped like a real one (offline fallback).

    Same length, image shape, dtype and class names as `name`. Its images are drawn by
    `_stand_in_images`, a chunk at a time when first used (a quick run touches few), and a few
    labels are wrong on purpose (`LABEL_NOISE`), so training curves look like learning on real
    data (accuracy well above chance, well below 1); the numbers are not the real data's.
    Like torchvision's datasets it returns `(PIL image, int label)` before transforms and offers
    `.classes`, `.targets` and `.data` (uint8; N x H x W tensor for grey images, N x H x W x C
    array for colour).
    """

    is_stand_in = True

    def __init__(
        self,
        name: str,
        train: bool = True,
        length: int | None = None,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        seed: int = 1234,
    ):
        self.shape, classes, train_length, test_length = VISION_SPECS[name]
        self.name, self.train, self.classes = name, train, list(classes)
        self.transform, self.target_transform = transform, target_transform
        self.length = length if length is not None else (train_length if train else test_length)
        self._seed, self._split_seed = seed, seed + (1 if train else 1_000_003)
        draws = torch.Generator().manual_seed(self._split_seed)
        self._true_classes = torch.randint(len(classes), (self.length,), generator=draws)
        noisy = torch.rand(self.length, generator=draws) < LABEL_NOISE
        random_labels = torch.randint(len(classes), (self.length,), generator=draws)
        self.targets = torch.where(noisy, random_labels, self._true_classes)
        self._chunks: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.length

    def _chunk(self, number: int) -> torch.Tensor:
        """Images CHUNK * number ... CHUNK * (number + 1) - 1, drawn on first use and kept."""
        if number not in self._chunks:
            classes = self._true_classes[number * CHUNK : (number + 1) * CHUNK]
            split_seed = self._split_seed * 1009 + number
            self._chunks[number] = _stand_in_images(classes, self.shape, self._seed, split_seed)
        return self._chunks[number]

    @property
    def data(self):
        """The images as uint8, in torchvision's `.data` layout (N x H x W, or N x H x W x C as
        a NumPy array for colour). Slices such as `.data[:512]` draw only the chunks they need."""
        return _LazyPixels(self)

    def __getitem__(self, index: int):
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} images")
        index %= self.length
        pixels = self._chunk(index // CHUNK)[index % CHUNK].numpy()
        image = Image.fromarray(pixels[..., 0] if self.shape[2] == 1 else pixels)
        label = int(self.targets[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"StandInImages({self.name}, {split}, {self.length} images)"


class _LazyPixels:
    """A stand-in's `.data`: indexing with an int or a plain slice draws only the chunks it needs;
    anything else (`.shape`, a full read, fancy indexing) draws them all."""

    def __init__(self, images: StandInImages):
        self.images = images

    def _layout(self, pixels: torch.Tensor):
        return pixels[..., 0] if self.images.shape[2] == 1 else pixels.numpy()

    def __len__(self) -> int:
        return self.images.length

    def __getitem__(self, key):
        if isinstance(key, int):
            if not -len(self) <= key < len(self):
                raise IndexError(f"index {key} out of range for {len(self)} images")
            return self[key % len(self) : key % len(self) + 1][0]
        if not (isinstance(key, slice) and key.step in (None, 1)):
            return self._all()[key]
        start, stop, _ = key.indices(len(self))
        if stop <= start:
            return self._layout(torch.empty((0, *self.images.shape), dtype=torch.uint8))
        first, last = start // CHUNK, (stop - 1) // CHUNK
        pixels = torch.cat([self.images._chunk(n) for n in range(first, last + 1)])
        return self._layout(pixels[start - first * CHUNK : stop - first * CHUNK])

    def _all(self):
        return self[:]

    def __getattr__(self, name):  # .shape, .dtype, .float(), ...: the whole array
        if name == "images":  # not set yet (a copy being made): do not recurse
            raise AttributeError(name)
        return getattr(self._all(), name)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._all(), dtype=dtype)

    def __repr__(self) -> str:
        return f"<{len(self)} stand-in images, drawn as they are read>"


def _local_archives(name: str, root: Path) -> list[tuple[Path, str]]:
    """The archive files torchvision would download for `name`, with their MD5s."""
    import torchvision.datasets as tvd

    if name == "CIFAR10":
        return [(root / tvd.CIFAR10.filename, tvd.CIFAR10.tgz_md5)]
    raw = root / name / "raw"
    return [(raw / filename, md5) for filename, md5 in getattr(tvd, name).resources]


def vision_dataset(
    name: str,
    args,
    *,
    train: bool = True,
    transform: Callable | None = None,
    target_transform: Callable | None = None,
):
    """The real torchvision dataset `name` ('MNIST', 'FashionMNIST', 'CIFAR10') or its stand-in.

    `args` supplies `data_dir` and `offline` (as `lesson_args` returns them). Order of attempts:
    the dataset already prepared on disk; its archives on disk (verified by MD5, extracted, no
    network); a download when allowed and the network answers; else the announced stand-in.
    Archives present but corrupt are an error, not a reason to fall back.
    """
    import torchvision.datasets as tvd

    if name not in VISION_SPECS:
        raise DataError(f"unknown dataset {name!r} (known: {', '.join(VISION_SPECS)})")
    root = Path(args.data_dir)
    dataset_class = getattr(tvd, name)
    options = dict(train=train, transform=transform, target_transform=target_transform)

    def load(download: bool, at: Path = root):
        try:
            return dataset_class(at, download=download, **options)
        except PermissionError as error:
            raise DataError(
                f"{name}: cannot write under {at} to prepare the data ({error.strerror}); "
                "use a writable --data-dir"
            ) from None
        except (RuntimeError, OSError, EOFError, ValueError) as error:
            if download:
                raise DataUnavailable(f"{name}: {str(error).splitlines()[0]}") from None
            return None

    dataset = load(download=False)
    if dataset is not None:
        return dataset

    archives = _local_archives(name, root)
    present = [(path, md5) for path, md5 in archives if path.is_file()]
    for path, md5 in present:
        if md5sum(path) != md5:
            raise DataError(f"{path} is corrupt (MD5 differs from {md5}); delete it and retry")
    if len(present) == len(archives):  # everything on disk: torchvision only extracts
        if _writable(archives[0][0].parent):
            return load(download=True)
        # A read-only folder (a shared copy, say): leave it untouched and extract into a
        # cache that links to its archives.
        return load(download=True, at=_extraction_cache(root, archives))

    how_to_get = (
        f"run once with network access, or put the files torchvision downloads under "
        f"{root}/ (see {DATA_README})"
    )
    if args.offline:
        reason = f"is not under {root} and downloads are off"
    elif not network_reachable(_first_url(dataset_class)):
        reason = f"is not under {root} and the network is unreachable"
    else:
        try:
            with network_timeout():
                return load(download=True)
        except DataUnavailable as error:
            reason = f"could not be downloaded ({error})"
    use_stand_in(name, reason, how_to_get)
    return StandInImages(name, train=train, transform=transform, target_transform=target_transform)


def _writable(folder: Path) -> bool:
    """Writable for us, judged by the permission bits too (root may write anywhere)."""
    return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & stat.S_IWUSR)


def _extraction_cache(root: Path, archives: list[tuple[Path, str]]) -> Path:
    """A writable copy of the read-only `root` under `<repo>/data/.cache/`: links to (or copies
    of) its `archives`, which torchvision then extracts there."""
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    cache_root = EXTRACTION_CACHE / key
    for archive, _ in archives:
        link = cache_root / archive.relative_to(root)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            try:
                link.symlink_to(archive.resolve())
            except OSError:  # Windows without the symlink privilege: a copy does as well
                shutil.copy2(archive, link)
    return cache_root


def _first_url(dataset_class) -> str:
    if hasattr(dataset_class, "mirrors"):
        return dataset_class.mirrors[0]
    return dataset_class.url
