"""Data as tensors: tables, time series, text and images turned into the tensors models eat.

What you will learn
  - a table (white wine quality): load a CSV, split features from the target, z-score the
    columns, one-hot the target with `scatter_`, select rows with boolean masks, and test a
    one-feature rule with precision and recall
  - a time series (bike sharing, hourly): reshape 17,520 hours into 730 days x 24 hours with
    `view` (and what that does to the strides), one-hot a categorical column, scale a feature
  - text (Pride and Prejudice): one-hot characters (ASCII) and words (a sorted vocabulary)
  - images: H x W x C pixels -> C x H x W tensors -> a batch, scaled and normalized per channel

How to run
    python lessons/02_data_as_tensors.py
The files (from the book *Deep Learning with PyTorch*) are read from `<data root>/dlwpt/p1ch4/`;
missing ones are downloaded from the book's repository (MD5-checked) when online. Offline, each
missing dataset (the image folder counts as one) is replaced by a synthetic stand-in of the
same shape, announced once.
Open the file in VS Code or Jupyter to run it cell by cell (`# %%` marks the cells).

Time: --quick ~3 s, full ~3 s on a 2-core CPU.
"""

# %% Imports
from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import torch

from common.cli import lesson_args
from common.data import DataError, DataUnavailable, fetch_file, use_stand_in
from common.report import ReferenceValues, write_metrics

LESSON = Path(__file__).stem
BOOK_URL = (
    "https://raw.githubusercontent.com/deep-learning-with-pytorch/dlwpt-code/"
    "d6c0210143daa133bbdeddaffc8993b1e17b5174/data/"
)
FILES = {  # relative path under the data root -> MD5 of the book's file
    "dlwpt/p1ch4/tabular-wine/winequality-white.csv": "5d9ff0f7f716dace19e3ab4578775fd7",
    "dlwpt/p1ch4/bike-sharing-dataset/hour-fixed.csv": "7e635fc1dbf8828fc60231f1c8ed8a6d",
    "dlwpt/p1ch4/jane-austen/1342-0.txt": "5f90751528addaf3a9c22e8ded1af37d",
    "dlwpt/p1ch4/image-cats/cat1.png": "7f11b6e8dc44599f4855c1b6476a868e",
    "dlwpt/p1ch4/image-cats/cat2.png": "5ae482db8bb195825efd950eb00569b0",
    "dlwpt/p1ch4/image-cats/cat3.png": "c1232c6bc14f44769a18089227e28d8c",
}
CATS = [f"dlwpt/p1ch4/image-cats/cat{number}.png" for number in (1, 2, 3)]
WINE_COLUMNS = [  # the header of winequality-white.csv (the stand-in borrows it)
    "fixed acidity", "volatile acidity", "citric acid", "residual sugar", "chlorides",
    "free sulfur dioxide", "total sulfur dioxide", "density", "pH", "sulphates", "alcohol",
    "quality",
]  # fmt: skip

# Reference values from CURRICULUM.md (they hold for the real files): label -> (value, matches?)
references = ReferenceValues()


def check(label: str, value, expected, real: bool = True):
    """Print `value` beside its reference value; on stand-in data there is nothing to compare."""
    if isinstance(value, torch.Size):
        value = list(value)
    if not real:
        print(f"  {label}: {value}   (reference {expected} is for the real file)")
        return value
    ok = value == expected or (isinstance(value, float) and abs(value - expected) < 5e-4)
    return references.check(label, value, expected, ok)


def data_files(args, name: str, *relatives: str) -> list[Path] | None:
    """The real files under the data root (downloaded if need be), or None: use a stand-in."""
    try:
        return [
            fetch_file(
                args.data_dir,
                relative,
                url=BOOK_URL + relative.removeprefix("dlwpt/"),
                md5=FILES[relative],
                offline=args.offline,
            )
            for relative in relatives
        ]
    except DataUnavailable as error:
        missing, reason = str(error).split(" ", 1)  # "<relative path> is not under ..."
        if len(relatives) > 1:  # a folder: one notice for all of it, naming the missing file
            reason = f"({Path(missing).name} {reason})"
        folder = str(Path(relatives[0]).parent).removeprefix("dlwpt/")
        use_stand_in(
            name,
            reason,
            f"run once online, or copy the book's data/{folder}/ under {args.data_dir}/dlwpt/",
        )
        return None


def data_file(args, relative: str) -> Path | None:
    """One real file, or None (a stand-in was announced)."""
    paths = data_files(args, Path(relative).name, relative)
    return paths[0] if paths else None


def load_table(path: Path, delimiter: str, columns: int, converters=None) -> torch.Tensor:
    """A numeric CSV with one header row, as float32; a malformed file is a one-line error."""
    try:
        with warnings.catch_warnings():  # an empty file: our error below says it better
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(
                path, np.float32, delimiter=delimiter, skiprows=1, converters=converters, ndmin=2
            )
    except (ValueError, IndexError, UnicodeDecodeError) as error:
        raise DataError(
            f"{path}: expected a '{delimiter}'-separated table of {columns} numeric "
            f"columns under a header row ({str(error).splitlines()[0]})"
        ) from None
    if len(table) == 0:
        raise DataError(f"{path}: expected rows of {columns} numbers under the header, found none")
    if table.shape[1] != columns:
        raise DataError(f"{path}: expected {columns} columns of numbers, found {table.shape[1]}")
    return torch.from_numpy(table)


# %% 1. A table: white wine quality
def wine(args) -> None:
    print("\n# 1. Tabular data: winequality-white.csv")
    path = data_file(args, "dlwpt/p1ch4/tabular-wine/winequality-white.csv")
    if path is None:  # stand-in: 11 chemical measurements and a quality score 3..9
        g = torch.Generator().manual_seed(0)
        features = torch.rand(4898, 11, generator=g) * 50
        quality = (6 + (25 - features[:, 6]) / 12 + torch.randn(4898, generator=g)).round()
        table, names = torch.cat([features, quality.clamp(3, 9)[:, None]], 1), WINE_COLUMNS
    else:
        table = load_table(path, ";", 12)
        try:  # csv.reader shows the header row that numpy skipped
            with open(path, newline="", encoding="utf-8") as file:
                names = next(csv.reader(file, delimiter=";"))
        except (UnicodeDecodeError, csv.Error) as error:
            raise DataError(f"{path}: expected a header row of column names ({error})") from None
    real = path is not None
    print(f"  columns: {names}")
    features, target = table[:, :-1], table[:, -1].long()  # quality is the last column
    check("features shape", features.shape, [4898, 11], real)
    check("target shape", target.shape, [4898], real)

    # z-score every column: mean 0, standard deviation 1, so no feature dominates by its units
    normalized = (features - features.mean(dim=0)) / features.std(dim=0)
    print(
        f"  z-scored means ~0: {normalized.mean(0).abs().max().item():.1e}, std 1: "
        f"{normalized.std(0).mean().item():.3f}"
    )
    # One-hot: a row of ten zeros per wine with a 1 at its quality (scatter_ writes the ones)
    one_hot = torch.zeros(len(target), 10).scatter_(1, target.unsqueeze(1), 1.0)
    print(f"  one-hot target: {list(one_hot.shape)}, first row {one_hot[0].int().tolist()}")

    bad, mid, good = target.le(3), target.gt(3) & target.lt(7), target.ge(7)  # boolean masks
    print(
        f"  wines per group: bad {bad.sum().item()}, mid {mid.sum().item()}, "
        f"good {good.sum().item()}"
    )
    # The mean of every feature within each group: which features move with quality?
    group_means = torch.stack([features[mask].mean(dim=0) for mask in (bad, mid, good)])
    print(f"  {'feature means per group':<24}{'bad':>9}{'mid':>9}{'good':>9}")
    for name, means in zip(names, group_means.T):
        print(f"    {name:<22}" + "".join(f"{m:9.2f}" for m in means.tolist()))
    sulfur = 6  # column 6, total sulfur dioxide: it falls as quality rises
    # A one-feature rule: less sulfur than the mid group's mean => "good" (quality > 5)
    predicted = features[:, sulfur] < features[mid, sulfur].mean()
    actual = target > 5
    correct = (predicted & actual).sum().item()
    check("predicted good", predicted.sum().item(), 2727, real)
    check("actually good", actual.sum().item(), 3258, real)
    check("both", correct, 2018, real)
    # Precision: of the wines we call good, how many are? Recall: of the good, how many we find.
    # (The source notes swap the two names.)
    check("precision", round(correct / predicted.sum().item(), 3), 0.740, real)
    check("recall", round(correct / actual.sum().item(), 3), 0.619, real)


# %% 2. A time series: bike sharing, one row per hour
def bikes(args) -> None:
    print("\n# 2. Time series: hour-fixed.csv (bike sharing)")
    path = data_file(args, "dlwpt/p1ch4/bike-sharing-dataset/hour-fixed.csv")
    if path is None:
        g = torch.Generator().manual_seed(1)
        hours = torch.rand(17520, 17, generator=g)
        hours[:, 9] = torch.randint(1, 5, (17520,), generator=g).float()  # weather 1..4
    else:  # column 1 is a date 2011-01-01: keep its day of the month as a number
        hours = load_table(path, ",", 17, converters={1: lambda text: float(text[8:10])})
    real = path is not None
    check("hours shape", hours.shape, [17520, 17], real)
    check("hours stride", hours.stride(), (17, 1), real)
    # view reinterprets the same memory: 730 days of 24 hours of 17 columns, no copy made
    days = hours.view(-1, 24, hours.shape[1])
    check("days shape", days.shape, [730, 24, 17], real)
    check("days stride", days.stride(), (408, 17, 1), real)
    days = days.transpose(1, 2)  # N x C x L: days x columns x hours, as 1-D convolutions expect
    print(f"  transposed to N x C x L: {list(days.shape)}")

    weather = days[:, 9, :].long() - 1  # categories 1..4 -> 0..3
    weather_one_hot = torch.zeros(days.shape[0], 4, 24).scatter_(1, weather.unsqueeze(1), 1.0)
    print(f"  weather one-hot: {list(weather_one_hot.shape)}")
    days = torch.cat((days, weather_one_hot), dim=1)  # 17 + 4 channels
    print(f"  with the one-hot weather appended: {list(days.shape)}")
    temp = days[:, 10, :]
    scaled = (temp - temp.min()) / (temp.max() - temp.min())  # min-max: into [0, 1]
    standardized = (temp - temp.mean()) / temp.std()  # z-score: mean 0, std 1
    print(
        f"  temperature min-max -> [{scaled.min().item():.1f}, {scaled.max().item():.1f}], "
        f"z-score -> mean {standardized.mean().item():.1e}"
    )


# %% 3. Text: one-hot characters and words
def clean_words(text: str) -> list[str]:
    """Lower-case words with surrounding punctuation (curly quotes included) stripped."""
    punctuation = '.,;:"!?\u201d\u201c_-'
    return [word.strip(punctuation) for word in text.lower().replace("\n", " ").split()]


def jane_austen(args) -> None:
    print("\n# 3. Text: Pride and Prejudice (1342-0.txt)")
    path = data_file(args, "dlwpt/p1ch4/jane-austen/1342-0.txt")
    if path is None:
        g = torch.Generator().manual_seed(2)
        vocabulary = [f"word{i}" for i in range(500)]
        text = "\n".join(
            " ".join(vocabulary[i] for i in torch.randint(500, (12,), generator=g))
            for _ in range(300)
        )
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise DataError(f"{path}: expected UTF-8 text ({error.reason})") from None
    real = path is not None
    line = text.split("\n")[200]
    print(f"  line 200: {line!r}")
    # Characters: ASCII has 128 codes, so each character becomes a row with one 1 among 128
    letters = torch.zeros(len(line), 128)
    for i, letter in enumerate(line.lower().strip()):
        letters[i][ord(letter) if ord(letter) < 128 else 0] = 1  # non-ASCII (a curly quote) -> 0
    check("character one-hot of the line", letters.shape, [70, 128], real)

    words = sorted(set(clean_words(text)))  # the vocabulary: every distinct word, sorted
    word_index = {word: i for i, word in enumerate(words)}
    check("vocabulary size", len(word_index), 7261, real)
    line_words = clean_words(line)
    one_hot = torch.zeros(len(line_words), len(word_index))
    for i, word in enumerate(line_words):
        one_hot[i][word_index[word]] = 1
        print(f"    {i:2} {word_index[word]:4} {word}")
    check("word one-hot of the line", one_hot.shape, [11, 7261], real)


# %% 4. Images: a folder of PNGs -> one batch
def read_image(path: Path) -> torch.Tensor:
    """An image file as an H x W x C uint8 tensor (Pillow decodes, NumPy hands over the pixels)."""
    from PIL import Image  # imported here: only this section needs it

    try:
        with Image.open(path) as image:
            return torch.from_numpy(np.array(image.convert("RGB")))
    except OSError as error:
        raise DataError(f"{path}: expected a PNG image ({error})") from None


def cats(args) -> list[int]:
    print("\n# 4. Images: image-cats/*.png")
    paths = data_files(args, "image-cats folder", *CATS)
    if paths is None:  # stand-in: three 256 x 256 RGB noise images
        g = torch.Generator().manual_seed(3)
        images = list(torch.randint(0, 256, (3, 256, 256, 3), dtype=torch.uint8, generator=g))
    else:  # every PNG in the folder, in name order
        images = [read_image(path) for path in sorted(paths[0].parent.glob("*.png"))]
    print(f"  one image as read: H x W x C = {list(images[0].shape)}, {images[0].dtype}")
    # PyTorch wants C x H x W; permute only changes strides, no pixels move
    batch = torch.stack([image.permute(2, 0, 1) for image in images])
    print(f"  batch: N x C x H x W = {list(batch.shape)}")
    batch = batch.float() / 255.0  # uint8 0..255 -> float 0..1
    mean, std = batch.mean(dim=(0, 2, 3), keepdim=True), batch.std(dim=(0, 2, 3), keepdim=True)
    normalized = (batch - mean) / std  # each channel: mean 0, std 1
    print(
        f"  channel means {mean.flatten().numpy().round(3)} -> after normalizing "
        f"{normalized.mean(dim=(0, 2, 3)).numpy().round(3)}, std "
        f"{normalized.std(dim=(0, 2, 3)).numpy().round(3)}"
    )
    return list(batch.shape)


# %% Main
def main(argv=None) -> dict:
    args = lesson_args(__doc__, argv, name=LESSON)  # --quick: the lesson is already seconds
    references.clear()
    wine(args)
    bikes(args)
    jane_austen(args)
    image_batch = cats(args)
    metrics = {
        **references.metrics(),
        "image_batch_shape": image_batch,
    }
    write_metrics(args.out, metrics, headline="reference_values")
    return metrics


if __name__ == "__main__":
    main()
