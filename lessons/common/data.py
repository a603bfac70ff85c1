"""Real datasets when they can be had, a clearly announced stand-in when they cannot:
`vision_dataset("FashionMNIST", args)`, `data_file(args, "dlwpt/.../winequality-white.csv", ...)`.

Datasets sit under the data root in torchvision's layout. Downloads happen only when allowed
(not `--no-download`, not `LESSONS_OFFLINE=1`) and give up fast without a network; then a
lesson goes on with a deterministic synthetic stand-in, announced once with how to get the real
data (`LESSONS_REQUIRE_REAL_DATA=1` makes that an error instead).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import socket
import stat
import sys
import urllib.error
import urllib.parse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.datasets as tvd
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.utils import check_integrity

from common import LessonError
from common.settings import REPO_ROOT, REQUIRE_REAL_ENV, env_flag

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
    """Announce, once per dataset and process, that a stand-in replaces `name`."""
    if env_flag(REQUIRE_REAL_ENV):  # the real-data tests: a stand-in would prove nothing
        raise DataUnavailable(f"{name}: {reason}, and {REQUIRE_REAL_ENV}=1 forbids the stand-in")
    if name not in _announced:
        _announced.add(name)
        print(
            f"NOTICE: {name} {reason}: using a synthetic stand-in in the same format "
            f"(numbers will differ from the real data). To get the real data: {how_to_get}"
        )


def network_reachable(url: str, timeout: float = 5.0) -> bool:
    """Can we open a TCP connection to `url`'s host within `timeout` seconds?"""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def network_timeout(seconds: float = 10.0):
    """Every socket opened inside the block gives up after `seconds` (urllib waits forever)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def available_weights(weights, *, offline: bool, name: str):
    """`weights` (a torchvision weights enum) once its file is in torch's hub cache, downloaded
    first when allowed; else None, announced, so `model(weights=None)` gets random weights and
    runs all the same."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if cached.is_file():
        return weights
    reason = "downloads are off" if offline else "the network is unreachable"
    if not offline and network_reachable(weights.url):
        try:
            with network_timeout():
                weights.get_state_dict(progress=sys.stderr.isatty())  # into the hub cache
            return weights
        except (OSError, RuntimeError) as error:
            reason = f"the download failed ({' '.join(str(error).split())[:80]})"
    print(f"NOTICE: {name} ImageNet weights unavailable ({reason}): using random weights")
    return None


def fetch_file(root, relative_path: str, *, url: str, md5=None, offline=False) -> Path:
    """`<root>/<relative_path>`, downloaded (and MD5-checked) first when missing and allowed,
    else `DataUnavailable`. A file already there is used as it is: the lesson checks it."""
    path = Path(root) / relative_path
    if path.is_file():
        return path
    if offline:
        raise DataUnavailable(f"{relative_path} is not under {root} and downloads are off")
    if not network_reachable(url):
        raise DataUnavailable(f"{relative_path} is not under {root} and the network is unreachable")
    print(f"downloading {url}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # torch's downloader writes a temporary file and moves it into place when complete
        with network_timeout():
            torch.hub.download_url_to_file(url, str(path), progress=sys.stderr.isatty())
    except (urllib.error.URLError, OSError) as error:
        raise DataUnavailable(f"could not download {url}: {error}") from None
    if not check_integrity(path, md5):
        path.unlink()
        raise DataError(f"{url}: checksum mismatch (expected md5 {md5}); try again later")
    return path


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


CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
# name -> (image shape H, W, C; the real dataset's .classes; train length; test length)
VISION_SPECS = {
    "MNIST": ((28, 28, 1), tvd.MNIST.classes, 60_000, 10_000),
    "FashionMNIST": ((28, 28, 1), tvd.FashionMNIST.classes, 60_000, 10_000),
    "CIFAR10": ((32, 32, 3), CIFAR10_CLASSES, 50_000, 10_000),
}
LABEL_NOISE = 0.1  # the share of stand-in labels drawn at random
CHUNK = 4096  # stand-in images are drawn this many at a time, when first read


def _stand_in_images(classes: torch.Tensor, shape: tuple, seed: int, split_seed: int):
    """uint8 images (N x H x W x C) of `classes`: each class pattern is 80% a pattern all classes
    share (so classes overlap), each image its pattern shifted by up to 2 pixels, with its own
    contrast and strong noise. Small models reach about 0.6 to 0.9 accuracy, as on real data."""
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


class StandInPixels:
    """A stand-in's `.data`, in torchvision's layout (uint8 N x H x W; for colour an N x H x W x C
    NumPy array). Reading an item or a plain slice (`[:512]`) draws only the chunks it needs;
    anything else (`.shape`, a full read, fancy indexing) draws them all."""

    def __init__(self, classes: torch.Tensor, shape: tuple, seed: int, split_seed: int):
        self.classes, self.shape_hwc, self.seeds = classes, shape, (seed, split_seed)
        self.chunks: dict[int, torch.Tensor] = {}

    def _chunk(self, n: int) -> torch.Tensor:
        if n not in self.chunks:
            classes, (seed, split_seed) = self.classes[n * CHUNK : (n + 1) * CHUNK], self.seeds
            self.chunks[n] = _stand_in_images(classes, self.shape_hwc, seed, split_seed + n)
        return self.chunks[n]

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, key):
        if isinstance(key, int):
            if not -len(self) <= key < len(self):
                raise IndexError(f"index {key} out of range for {len(self)} images")
            pixels = self._chunk(key % len(self) // CHUNK)[key % len(self) % CHUNK]
        elif isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(len(self))
            parts = [self._chunk(n)[max(start - n * CHUNK, 0) : stop - n * CHUNK]
                     for n in range(start // CHUNK, (stop - 1) // CHUNK + 1)]  # fmt: skip
            pixels = (
                torch.cat(parts) if parts else torch.empty((0, *self.shape_hwc), dtype=torch.uint8)
            )
        else:
            return self[:][key]
        return pixels[..., 0] if self.shape_hwc[2] == 1 else pixels.numpy()

    def __getattr__(self, name):  # .shape, .dtype, .float(), ...: those of the whole array
        if name in ("classes", "shape_hwc", "seeds", "chunks"):  # not set yet: do not recurse
            raise AttributeError(name)
        return getattr(self[:], name)


class StandInImages(Dataset):
    """The offline fallback: the length, image shape, dtype and classes of dataset `name`, images
    from `_stand_in_images` and a few labels wrong on purpose (`LABEL_NOISE`), so training looks
    like learning on real data, with other numbers. Items are `(PIL image, int label)` before
    transforms, as in torchvision, with `.classes`, `.targets` and `.data` beside them."""

    def __init__(self, name, train=True, length=None, transform=None, target_transform=None):
        shape, classes, train_length, test_length = VISION_SPECS[name]
        self.name, self.train, self.classes = name, train, list(classes)
        self.transform, self.target_transform = transform, target_transform
        length = length if length is not None else (train_length if train else test_length)
        draws = torch.Generator().manual_seed(1235 if train else 1_001_237)
        true_classes = torch.randint(len(classes), (length,), generator=draws)
        noisy = torch.rand(length, generator=draws) < LABEL_NOISE
        random_labels = torch.randint(len(classes), (length,), generator=draws)
        self.targets = torch.where(noisy, random_labels, true_classes)
        self.data = StandInPixels(true_classes, shape, 1234, 1009 * (1235 if train else 1_001_237))

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        pixels = np.asarray(self.data[index])  # IndexError past the end, as a list does
        image, label = Image.fromarray(pixels), int(self.targets[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    def __repr__(self) -> str:
        return f"StandInImages({self.name}, {'train' if self.train else 'test'}, {len(self)})"


def vision_dataset(name: str, args, *, train=True, transform=None, target_transform=None):
    """The real torchvision dataset `name` ('MNIST', 'FashionMNIST', 'CIFAR10') or its stand-in.
    Tried in order: the dataset prepared under `args.data_dir`; its archives there (MD5-checked,
    extracted, no network); a download when allowed; else the stand-in. Corrupt archives are an
    error, not a reason to fall back."""
    if name not in VISION_SPECS:
        raise DataError(f"unknown dataset {name!r} (known: {', '.join(VISION_SPECS)})")
    root, dataset_class = Path(args.data_dir), getattr(tvd, name)
    options = dict(train=train, transform=transform, target_transform=target_transform)

    def load(download: bool, at: Path = root):
        try:
            return dataset_class(at, download=download, **options)
        except PermissionError as error:
            reason = f"cannot write under {at} to prepare the data ({error.strerror})"
            raise DataError(f"{name}: {reason}; use a writable --data-dir") from None
        except (RuntimeError, OSError, EOFError, ValueError) as error:
            if download:
                raise DataUnavailable(f"{name}: {str(error).splitlines()[0]}") from None
            return None

    dataset = load(download=False)
    if dataset is not None:
        return dataset
    if name == "CIFAR10":
        archives = [(root / tvd.CIFAR10.filename, tvd.CIFAR10.tgz_md5)]
    else:
        archives = [(root / name / "raw" / file, md5) for file, md5 in dataset_class.resources]
    present = [(path, md5) for path, md5 in archives if path.is_file()]
    for path, md5 in present:
        if not check_integrity(path, md5):
            raise DataError(f"{path} is corrupt (MD5 differs from {md5}); delete it and retry")
    if len(present) == len(archives):  # everything on disk: torchvision only extracts
        folder = archives[0][0].parent
        writable = os.access(folder, os.W_OK) and folder.stat().st_mode & stat.S_IWUSR
        return load(download=True, at=root if writable else _extraction_cache(root, archives))

    url = getattr(dataset_class, "mirrors", [getattr(dataset_class, "url", "")])[0]
    if args.offline:
        reason = f"is not under {root} and downloads are off"
    elif not network_reachable(url):
        reason = f"is not under {root} and the network is unreachable"
    else:
        try:
            with network_timeout():
                return load(download=True)
        except DataUnavailable as error:
            reason = f"could not be downloaded ({error})"
    use_stand_in(name, reason, f"run once online, or put torchvision's files under {root}/ "
                               "(see data/README.md)")  # fmt: skip
    return StandInImages(name, train, transform=transform, target_transform=target_transform)


def _extraction_cache(root: Path, archives: list[tuple[Path, str]]) -> Path:
    """For a read-only `root` (a shared copy): a writable folder under `<repo>/data/.cache/`
    with links to (or copies of) its archives, which torchvision then extracts there."""
    cache_root = EXTRACTION_CACHE / hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    for archive, _ in archives:
        link = cache_root / archive.relative_to(root)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            try:
                link.symlink_to(archive.resolve())
            except OSError:  # Windows without the symlink privilege: a copy does as well
                shutil.copy2(archive, link)
    return cache_root
