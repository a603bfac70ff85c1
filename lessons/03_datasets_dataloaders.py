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
    python lessons/03_datasets_dataloaders.py --quick
Data: FashionMNIST and MNIST in torchvision's layout under the data root, and
`liuer/diabetes.csv.gz`; downloaded when missing and online, otherwise announced stand-ins.
Open the file in VS Code or Jupyter to run it cell by cell (`# %%` marks the cells).

Time: --quick ~5 s, full ~6 s on a 2-core CPU.
"""

# %% Imports
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader, Dataset, random_split

from common.cli import lesson_args
from common.data import (
    DataError,
    DataUnavailable,
    fetch_file,
    is_stand_in,
    use_stand_in,
    vision_dataset,
)
from common.report import ReferenceValues, atomic_path, save_figure, write_metrics

LESSON = Path(__file__).stem
DIABETES = "liuer/diabetes.csv.gz"
DIABETES_URL = (
    "https://raw.githubusercontent.com/hunkim/PyTorchZeroToAll/"
    "e5a260fac0b4ff1e2ec434fc6f0d962ac97fc289/data/diabetes.csv.gz"
)
DIABETES_MD5 = "b7f372850118dfaf306e2f334e6a718f"

references = ReferenceValues()


def check(label: str, value, expected, tolerance: float = 0.0):
    """Print `value` beside its reference value and remember whether they match."""
    if isinstance(value, torch.Size):
        value = list(value)
    ok = value == expected or (tolerance and abs(value - expected) <= tolerance)
    return references.check(label, value, expected, ok)


def transforms():
    # v2 is torchvision's current transforms API; importing it here keeps `import` of the lesson
    # light (torchvision takes a few seconds to import).
    from torchvision.transforms import v2

    return v2


# %% 1. A ready-made dataset: FashionMNIST
def fashion_mnist(args):
    v2 = transforms()
    # ToImage + ToDtype(scale=True) is v2's ToTensor: PIL image -> C x H x W float in [0, 1]
    to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    train = vision_dataset("FashionMNIST", args, train=True, transform=to_tensor)
    test = vision_dataset("FashionMNIST", args, train=False, transform=to_tensor)
    print(f"\n# 1. FashionMNIST: {len(train)} training and {len(test)} test images")
    print(f"  classes: {train.classes}")
    image, label = train[0]
    print(f"  one sample: image {list(image.shape)} {image.dtype}, label {label}")

    figure, axes = plt.subplots(3, 3, figsize=(6, 6))
    picks = torch.randint(len(train), (9,))  # seeded by lesson_args: the same grid every run
    for ax, index in zip(axes.flat, picks.tolist()):
        image, label = train[index]
        ax.imshow(image.squeeze().numpy(), cmap="gray")
        ax.set_title(train.classes[label], fontsize=9)
        ax.axis("off")
    save_figure(figure, args.out / "fashion_mnist_samples.png")
    return train, test


# %% 2. Your own Dataset: an image folder described by annotations.csv
class AnnotatedImages(Dataset):
    """Images in `folder`, labelled by `annotations.csv` rows of (file name, label)."""

    def __init__(self, folder: Path, transform=None, target_transform=None):
        self.folder = Path(folder)
        self.labels = pd.read_csv(self.folder / "annotations.csv", header=None)
        self.transform, self.target_transform = transform, target_transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        file_name, label = self.labels.iloc[index]
        image = Image.open(self.folder / file_name)  # read one image only when asked for it
        if self.transform:
            image = self.transform(image)
        if self.target_transform:
            label = self.target_transform(label)
        return image, label


def write_image_folder(dataset, folder: Path, count: int = 12) -> Path:
    """Save `count` samples of `dataset` as PNGs plus annotations.csv (written atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        image, label = dataset[index]  # tensors [1, 28, 28] in [0, 1]
        pixels = (image.squeeze(0) * 255).round().to(torch.uint8).numpy()
        name = f"sample_{index:02d}.png"
        with atomic_path(folder / name) as temp:
            Image.fromarray(pixels).save(temp, format="PNG")
        rows.append((name, label))
    with atomic_path(folder / "annotations.csv") as temp:
        pd.DataFrame(rows).to_csv(temp, header=False, index=False)
    return folder


def custom_image_dataset(args, fashion_train) -> dict:
    print("\n# 2. A custom Dataset over annotations.csv + a folder of images")
    folder = write_image_folder(fashion_train, args.out / "my_images")
    v2 = transforms()
    one_hot = v2.Lambda(  # a target transform: label 3 -> [0, 0, 0, 1, 0, ...]
        lambda y: torch.zeros(10).scatter_(0, torch.tensor(y), value=1)
    )
    dataset = AnnotatedImages(
        folder,
        transform=v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]),
        target_transform=one_hot,
    )
    image, label = dataset[0]
    print(
        f"  {len(dataset)} images in {folder.name}/; first: {list(image.shape)}, "
        f"one-hot label {label.int().tolist()}"
    )
    same = torch.allclose(image, fashion_train[0][0], atol=1 / 255)
    print(f"  read back equals the original sample (to 8-bit precision): {same}")
    return {"custom_dataset_size": len(dataset), "custom_read_back_matches": same}


# %% 3. Your own Dataset over a gzipped CSV table: the diabetes data
class DiabetesDataset(Dataset):
    """8 features and a 0/1 label per row, read once from a `.csv.gz` file."""

    def __init__(self, path: Path):
        try:
            with gzip.open(path, "rt") as file:
                table = np.loadtxt(file, delimiter=",", dtype=np.float32, ndmin=2)
        except (OSError, EOFError, ValueError, zlib.error) as error:
            raise DataError(
                f"{path}: expected a gzipped CSV of numbers ({str(error).splitlines()[0]})"
            ) from None
        if table.shape[1] != 9:
            raise DataError(
                f"{path}: expected 9 columns (8 features + label), found {table.shape[1]}"
            )
        self.features = torch.from_numpy(table[:, :-1])
        self.labels = torch.from_numpy(table[:, -1:])

    def __len__(self):
        return len(self.features)

    def __getitem__(self, index):
        return self.features[index], self.labels[index]


def diabetes(args) -> Dataset:
    print("\n# 3. A custom Dataset over a gzipped CSV (diabetes)")
    try:
        path = fetch_file(
            args.data_dir, DIABETES, url=DIABETES_URL, md5=DIABETES_MD5, offline=args.offline
        )
        dataset = DiabetesDataset(path)
    except DataUnavailable as error:
        use_stand_in(
            "diabetes.csv.gz",
            str(error).removeprefix(DIABETES + " "),
            f"download {DIABETES_URL} to <data root>/{DIABETES}",
        )
        g = torch.Generator().manual_seed(0)
        features = torch.rand(759, 8, generator=g) * 2 - 1
        labels = (features[:, :3].sum(1, keepdim=True) > 0).float()
        dataset = torch.utils.data.TensorDataset(features, labels)
    features, label = dataset[0]
    print(f"  {len(dataset)} rows; one row: features {list(features.shape)}, label {label.item()}")
    return dataset


# %% 4. DataLoader: batches, shuffling, workers, collate_fn
def loaders(args, fashion_train, table) -> None:
    print("\n# 4. DataLoader")
    loader = DataLoader(fashion_train, batch_size=64, shuffle=True)
    images, labels = next(iter(loader))  # a loader is iterable; iter() gives an iterator
    check("FashionMNIST batch", images.shape, [64, 1, 28, 28])
    check("labels batch", labels.shape, [64])
    # drop_last discards the last, smaller batch (759 = 11 x 64 + 55 rows)
    print(
        f"  diabetes batches of 64: {len(DataLoader(table, batch_size=64))}, with drop_last: "
        f"{len(DataLoader(table, batch_size=64, drop_last=True))}"
    )
    # num_workers > 0 prepares batches in worker processes while the model trains
    workers = 0 if args.quick else 2
    rows = sum(len(x) for x, _ in DataLoader(table, batch_size=128, num_workers=workers))
    print(f"  {rows} rows read with num_workers={workers}")

    def features_only(batch):  # collate_fn decides how a list of samples becomes a batch
        return torch.stack([features for features, _ in batch])

    batch = next(iter(DataLoader(table, batch_size=4, collate_fn=features_only)))
    print(f"  a collate_fn that keeps only the features: {list(batch.shape)}")


# %% 5. Transforms
def transform_demos(args) -> None:
    from torchvision.transforms import ToTensor  # the classic transform the notes use

    v2 = transforms()
    print("\n# 5. Transforms")
    array = np.random.default_rng(0).random((3, 4, 6), dtype=np.float32)  # H x W x C
    check("ToTensor of a (3, 4, 6) array", ToTensor()(array).shape, [6, 3, 4])
    # v2 splits ToTensor in two: ToImage (H x W x C -> C x H x W) and ToDtype (scale=True: /255)
    print(f"  v2.ToImage of the same array: {list(v2.ToImage()(array).shape)}")
    pixels = np.array([[0, 128, 255]], dtype=np.uint8)[..., None]
    print(f"  ToTensor scales uint8 to [0, 1]: {ToTensor()(pixels).flatten().tolist()}")

    mnist = vision_dataset("MNIST", args, train=True)
    if not is_stand_in(mnist):  # real MNIST keeps all images as one uint8 tensor
        scaled = mnist.data.float() / 255
        mean, std = scaled.mean().item(), scaled.std().item()
        check("MNIST mean", round(mean, 4), 0.1307, tolerance=1e-4)
        check("MNIST std", round(std, 4), 0.3081, tolerance=1e-4)
    else:  # the stand-in: compute from a sample
        scaled = torch.stack(
            [
                v2.functional.to_dtype(
                    v2.functional.to_image(mnist[i][0]), torch.float32, scale=True
                )
                for i in range(512)
            ]
        )
        mean, std = scaled.mean().item(), scaled.std().item()
        print(f"  stand-in MNIST mean {mean:.4f}, std {std:.4f} (the real data: 0.1307 / 0.3081)")
    normalize = v2.Compose(
        [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize((mean,), (std,))]
    )
    sample = torch.stack([normalize(mnist[i][0]) for i in range(256)])
    print(
        f"  Normalize with them: 256 images now have mean {sample.mean().item():.2f}, "
        f"std {sample.std().item():.2f}"
    )
    pipeline = v2.Compose(
        [
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Resize((32, 32), antialias=True),
            v2.Normalize((mean,), (std,)),
        ]
    )
    image = pipeline(mnist[0][0])
    print(
        f"  Compose(ToImage, ToDtype, Resize 32, Normalize): {list(image.shape)}, "
        f"mean {image.mean().item():.3f}"
    )


# %% 6. Combining and splitting datasets
def combine_and_split(fashion_train, fashion_test) -> dict:
    print("\n# 6. ConcatDataset and random_split")
    everything = ConcatDataset([fashion_train, fashion_test])
    also = fashion_train + fashion_test  # `+` on two datasets builds the same ConcatDataset
    print(f"  ConcatDataset([train, test]) = {len(everything)} images; train + test: {len(also)}")
    # indices run on from one dataset into the next: item 60000 is the first test image
    same = torch.equal(everything[len(fashion_train)][0], fashion_test[0][0])
    print(f"  item {len(fashion_train)} of the concatenation is test item 0: {same}")
    train, validation = random_split(
        fashion_train, [0.9, 0.1], generator=torch.Generator().manual_seed(0)
    )
    print(f"  training set split 90/10: {len(train)} for training, {len(validation)} validation")
    return {
        "concat_size": len(also),
        "concat_continues_into_test": same,
        "split_sizes": [len(train), len(validation)],
    }


# %% Main
def main(argv=None) -> dict:
    args = lesson_args(__doc__, argv, name=LESSON)
    references.clear()
    fashion_train, fashion_test = fashion_mnist(args)
    custom = custom_image_dataset(args, fashion_train)
    table = diabetes(args)
    loaders(args, fashion_train, table)
    transform_demos(args)
    combined = combine_and_split(fashion_train, fashion_test)
    metrics = {
        **references.metrics(),
        "diabetes_rows": len(table),
        **custom,
        **combined,
    }
    write_metrics(args.out, metrics, headline="reference_values")
    return metrics


if __name__ == "__main__":
    main()
