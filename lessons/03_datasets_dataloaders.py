"""Datasets, DataLoaders and transforms: how PyTorch feeds data to a model, batch by batch.

What you will learn
  - torchvision's FashionMNIST: train/test splits, class names, a grid of samples
  - writing your own `Dataset` (`__len__` + `__getitem__`) over an image folder described by
    `annotations.csv`, and over a gzipped CSV table (the diabetes data)
  - `DataLoader` options: batch_size, shuffle, num_workers, drop_last, collate_fn; a loader is an
    iterable, `iter(loader)` an iterator
  - transforms: ToTensor (H x W x C -> C x H x W, uint8 -> [0, 1]), Normalize with a mean and std
    computed from the data, Resize, Compose, and a one-hot `Lambda` target transform
  - combining datasets with `ConcatDataset` and splitting them with `random_split`

How to run
    python lessons/03_datasets_dataloaders.py
    python lessons/03_datasets_dataloaders.py --quick   # MNIST statistics on 10,000 images
Data: FashionMNIST and MNIST in torchvision's layout under the data root, and
`liuer/diabetes.csv.gz`; downloaded when missing and online, otherwise announced stand-ins.
The image folder of section 2 and the sample grid go to outputs/03_datasets_dataloaders/.

Time: --quick ~5 s, full ~6 s on a 2-core CPU.
"""

# %%
import gzip
import zlib
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, random_split
from torchvision.transforms import ToTensor, v2

from common.cli import lesson_args
from common.data import DataError, data_file, vision_dataset
from common.report import save_figure, write_metrics

DIABETES = "liuer/diabetes.csv.gz"
DIABETES_URL = (
    "https://raw.githubusercontent.com/hunkim/PyTorchZeroToAll/"
    "e5a260fac0b4ff1e2ec434fc6f0d962ac97fc289/data/diabetes.csv.gz"
)
DIABETES_MD5 = "b7f372850118dfaf306e2f334e6a718f"

if __name__ == "__main__":  # true in a script and in a notebook, false when a test imports us
    args = lesson_args(__doc__, name="03_datasets_dataloaders")

# %% [markdown]
# ## 1. A ready-made dataset: FashionMNIST
# `torchvision.datasets` knows where MNIST-like datasets live and how to read them. Each item is
# a pair (image, label); the `transform` runs on each image as it is read. `v2.ToImage()` turns a
# PIL image into a C × H × W uint8 tensor and `v2.ToDtype(torch.float32, scale=True)` divides by
# 255: together they do what the classic `ToTensor` does (section 5).


# %%
def sample_grid(dataset, rows: int = 3) -> plt.Figure:
    """A rows x rows grid of random samples, titled with their class names."""
    figure, axes = plt.subplots(rows, rows, figsize=(6, 6))
    for ax, index in zip(axes.flat, torch.randint(len(dataset), (rows * rows,)).tolist()):
        image, label = dataset[index]
        ax.imshow(image.squeeze(0).numpy(), cmap="gray")
        ax.set_title(dataset.classes[label], fontsize=9)
        ax.axis("off")
    return figure


if __name__ == "__main__":
    to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    train_data = vision_dataset("FashionMNIST", args, train=True, transform=to_tensor)
    test_data = vision_dataset("FashionMNIST", args, train=False, transform=to_tensor)
    print(f"FashionMNIST: {len(train_data):,} training and {len(test_data):,} test images")
    print(f"classes: {train_data.classes}")
    image, label = train_data[0]
    print(f"one sample: image {list(image.shape)} {image.dtype} in [{image.min():.0f}, "
          f"{image.max():.0f}], label {label} ({train_data.classes[label]})")  # fmt: skip
    save_figure(sample_grid(train_data), args.out / "fashion_mnist_samples.png")

# %% [markdown]
# ## 2. Your own Dataset: an image folder described by annotations.csv
# A `Dataset` needs two methods: `__len__` (how many samples) and `__getitem__(i)` (sample
# $i$). Here `annotations.csv` lists one image file and its label per row; `__getitem__` reads
# one image only when asked for it, so a folder far larger than memory still works. The lesson
# writes such a folder itself, from the first FashionMNIST samples. A `target_transform` turns
# the label into a one-hot vector: `scatter_(0, label, value=1)` writes a 1 at the label.


# %%
class AnnotatedImages(Dataset):
    """Images in `image_dir`, labelled by `annotations_file` rows of (file name, label)."""

    def __init__(self, annotations_file, image_dir, transform=None, target_transform=None):
        self.labels = pd.read_csv(annotations_file, header=None)
        self.image_dir = Path(image_dir)
        self.transform, self.target_transform = transform, target_transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        file_name, label = self.labels.iloc[index]
        label = int(label)  # pandas gives a NumPy integer
        # PyTorch's tutorial reads the file with torchvision.io.read_image, deprecated since
        # torchvision 0.29; Pillow + to_image gives the same uint8 C x H x W tensor.
        with Image.open(self.image_dir / file_name) as file:
            image = v2.functional.to_image(file)
        if self.transform:
            image = self.transform(image)
        if self.target_transform:
            label = self.target_transform(label)
        return image, label


def write_image_folder(dataset, folder: Path, count: int = 12) -> Path:
    """Save the first `count` samples (C x H x W floats in [0, 1]) as PNGs + annotations.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        image, label = dataset[index]
        name = f"sample_{index:02d}.png"
        Image.fromarray((image.squeeze(0) * 255).round().byte().numpy()).save(folder / name)
        rows.append((name, label))
    pd.DataFrame(rows).to_csv(folder / "annotations.csv", header=False, index=False)
    return folder / "annotations.csv"


def one_hot(label, classes: int = 10) -> torch.Tensor:
    return torch.zeros(classes).scatter_(0, torch.tensor(label), value=1)


if __name__ == "__main__":
    annotations = write_image_folder(train_data, args.out / "my_images")
    my_images = AnnotatedImages(annotations, annotations.parent,
                                transform=v2.ToDtype(torch.float32, scale=True),
                                target_transform=v2.Lambda(one_hot))  # fmt: skip
    image, label = my_images[0]
    print(f"{len(my_images)} images in {annotations.parent.name}/; the first: "
          f"{list(image.shape)}, one-hot label {label.int().tolist()}")  # fmt: skip
    read_back = all(torch.allclose(my_images[i][0], train_data[i][0], atol=1 / 255)
                    for i in range(len(my_images)))  # fmt: skip
    print(f"read back equal to the originals (to 8-bit precision): {read_back}")

# %% [markdown]
# ## 3. A Dataset over a gzipped table: the diabetes data
# 759 patients, 8 measurements each and a 0/1 label (diabetes within five years). The table is
# small, so `__init__` reads all of it once and `__getitem__` only slices. `gzip.open` reads
# the compressed file directly; a file that is not the expected table stops with one line.


# %%
class DiabetesDataset(Dataset):
    """8 features and a 0/1 label per row, read once from a `.csv.gz` file."""

    def __init__(self, path: Path):
        try:
            with gzip.open(path, "rt") as file:
                table = np.loadtxt(file, delimiter=",", dtype=np.float32, ndmin=2)
        except (OSError, EOFError, ValueError, zlib.error) as error:
            reason = str(error).splitlines()[0]
            raise DataError(f"{path}: expected a gzipped CSV of numbers ({reason})") from None
        if table.shape[1] != 9:
            raise DataError(f"{path}: expected 9 columns (8 features + label), "
                            f"found {table.shape[1]}")  # fmt: skip
        self.features = torch.from_numpy(table[:, :-1])
        self.labels = torch.from_numpy(table[:, -1:])

    def __len__(self):
        return len(self.features)

    def __getitem__(self, index):
        return self.features[index], self.labels[index]


if __name__ == "__main__":
    path = data_file(args, DIABETES, url=DIABETES_URL, md5=DIABETES_MD5, name="diabetes.csv.gz")
    if path is not None:
        table = DiabetesDataset(path)
    else:  # the stand-in: 759 rows of random features, labelled by a simple rule
        g = torch.Generator().manual_seed(0)
        features = torch.rand(759, 8, generator=g) * 2 - 1
        labels = (features[:, :3].sum(1, keepdim=True) > 0).float()
        table = torch.utils.data.TensorDataset(features, labels)
    features, label = table[0]
    print(f"diabetes: {len(table)} rows; one row: features {list(features.shape)}, "
          f"label {label.item():.0f}")  # fmt: skip

# %% [markdown]
# ## 4. DataLoader: batches, shuffling, workers, collate_fn
# A `DataLoader` asks a dataset for samples and stacks them into batches. It is an *iterable*:
# `for X, y in loader` starts a fresh pass (reshuffled when `shuffle=True`) each time, while
# `iter(loader)` is an *iterator* over one pass and `next()` takes its next batch.
# `drop_last=True` drops a last, smaller batch; `num_workers` prepares batches in worker
# processes while the model computes (start them only under `if __name__ == "__main__":`,
# since on Windows and macOS each worker re-imports the script); `collate_fn` decides how a
# list of samples becomes a batch.


# %%
def features_only(samples):
    """A collate_fn: stack the features of (features, label) samples, drop the labels."""
    return torch.stack([features for features, _ in samples])


if __name__ == "__main__":
    train_loader = DataLoader(train_data, batch_size=64, shuffle=True)
    images, labels = next(iter(train_loader))
    print(f"FashionMNIST batch: {list(images.shape)}")
    print(f"labels batch: {list(labels.shape)}")
    print(f"{len(train_loader)} batches of 64 per pass over {len(train_data):,} images")
    batches, whole = len(DataLoader(table, 64)), len(DataLoader(table, 64, drop_last=True))
    print(f"diabetes in batches of 64: {batches}, with drop_last: {whole} (759 = 11 x 64 + 55)")
    workers = 0 if args.quick else 2
    worker_loader = DataLoader(Subset(train_data, range(2048)), batch_size=256,
                               num_workers=workers)  # fmt: skip
    seen = sum(len(y) for _, y in worker_loader)
    print(f"{seen} images read in {len(worker_loader)} batches with num_workers={workers}")
    batch = next(iter(DataLoader(table, batch_size=4, collate_fn=features_only)))
    print(f"a collate_fn that keeps only the features: {list(batch.shape)}")

# %% [markdown]
# ## 5. Transforms
# `ToTensor` turns an H × W × C array into a C × H × W tensor and scales uint8 values to
# $[0, 1]$ (it leaves floats as they are). `Normalize(mean, std)` computes $(x - \mu)/\sigma$
# per channel, so the inputs have mean 0 and standard deviation 1: take $\mu$ and $\sigma$ from
# the training data. torchvision keeps an MNIST split as one uint8 tensor, `dataset.data`, so
# the statistics of all 47 million pixels take one line instead of 60,000 transform calls
# (`--quick` measures the first 10,000 images).
# `Resize` changes the image size; `Compose` chains transforms into one.


# %%
def pixel_mean_std(images: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of uint8 pixels, scaled to [0, 1]."""
    pixels = images.float() / 255
    return pixels.mean().item(), pixels.std().item()


if __name__ == "__main__":
    array = np.random.default_rng(0).random((3, 4, 6), dtype=np.float32)  # H x W x C
    print(f"ToTensor of a (3, 4, 6) array: {list(ToTensor()(array).shape)}")
    print(f"v2.ToImage of the same array: {list(v2.ToImage()(array).shape)}")
    pixels = np.array([[0, 128, 255]], dtype=np.uint8)[..., None]
    print(f"ToTensor scales uint8 to [0, 1]: {ToTensor()(pixels).flatten().tolist()}")
    mnist = vision_dataset("MNIST", args, train=True)
    stats_images = mnist.data[: 10_000 if args.quick else None]
    mnist_mean, mnist_std = pixel_mean_std(stats_images)
    print(f"MNIST pixels ({len(stats_images):,} images): mean {mnist_mean:.4f}, "
          f"std {mnist_std:.4f}")  # fmt: skip
    normalize = v2.Compose([to_tensor, v2.Normalize((mnist_mean,), (mnist_std,))])
    normalized = torch.stack([normalize(mnist[i][0]) for i in range(256)])
    print(f"Normalize with them: 256 images now have mean {normalized.mean():.2f}, "
          f"std {normalized.std():.2f}")  # fmt: skip
    pipeline = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                           v2.Resize((32, 32)),
                           v2.Normalize((mnist_mean,), (mnist_std,))])  # fmt: skip
    resized = pipeline(mnist[0][0])
    print(f"Compose(ToImage, ToDtype, Resize 32, Normalize): {list(resized.shape)}")

# %% [markdown]
# ## 6. Combining and splitting datasets
# `ConcatDataset([a, b])` (or `a + b`) chains datasets: its indices run through `a`, then on
# into `b`. `random_split` cuts a dataset into random, non-overlapping parts, for instance 90%
# for training and 10% held out for validation; a seeded generator makes the split repeatable.

# %%
if __name__ == "__main__":
    everything = ConcatDataset([train_data, test_data])
    also = train_data + test_data  # `+` builds the same ConcatDataset
    print(f"ConcatDataset([train, test]): {len(everything):,} images; train + test: {len(also):,}")
    continues = torch.equal(everything[len(train_data)][0], test_data[0][0])
    print(f"item {len(train_data):,} of the concatenation is test item 0: {continues}")
    split = torch.Generator().manual_seed(0)
    train_part, validation = random_split(train_data, [0.9, 0.1], generator=split)
    print(f"training set split 90/10: {len(train_part):,} for training, "
          f"{len(validation):,} for validation")  # fmt: skip

# %% [markdown]
# ## 7. What the lesson found
# The MNIST statistics, the batch shapes and the dataset sizes go to `metrics.json`.

# %%
if __name__ == "__main__":
    metrics = {
        "mnist_mean": mnist_mean,
        "mnist_std": mnist_std,
        "mnist_images_measured": len(stats_images),
        "batch_shape": list(images.shape),
        "labels_shape": list(labels.shape),
        "to_tensor_shape": list(ToTensor()(array).shape),
        "custom_dataset_size": len(my_images),
        "custom_read_back_matches": read_back,
        "diabetes_rows": len(table),
        "concat_size": len(everything),
        "split_sizes": [len(train_part), len(validation)],
    }
    write_metrics(args.out, metrics, headline="mnist_mean")
