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
    python lessons/02_data_as_tensors.py    # seconds; --quick runs the same lesson
The files (from the book *Deep Learning with PyTorch*) are read from `<data root>/dlwpt/p1ch4/`;
missing ones are downloaded from the book's repository (MD5-checked) when online. Offline, each
missing dataset (the image folder counts as one) is replaced by a synthetic stand-in of the
same shape, announced once; its numbers are not the real files'.

Time: --quick ~4 s, full ~4 s on a 2-core CPU.
"""

# %%
import csv
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common.cli import lesson_args
from common.data import DataError, data_file
from common.report import write_metrics

BOOK_URL = (
    "https://raw.githubusercontent.com/deep-learning-with-pytorch/dlwpt-code/"
    "d6c0210143daa133bbdeddaffc8993b1e17b5174/data/"
)
WINE = "dlwpt/p1ch4/tabular-wine/winequality-white.csv"
BIKES = "dlwpt/p1ch4/bike-sharing-dataset/hour-fixed.csv"
TEXT = "dlwpt/p1ch4/jane-austen/1342-0.txt"
CATS = [f"dlwpt/p1ch4/image-cats/cat{number}.png" for number in (1, 2, 3)]
MD5 = {  # the book's files' checksums
    WINE: "5d9ff0f7f716dace19e3ab4578775fd7", BIKES: "7e635fc1dbf8828fc60231f1c8ed8a6d",
    TEXT: "5f90751528addaf3a9c22e8ded1af37d", CATS[0]: "7f11b6e8dc44599f4855c1b6476a868e",
    CATS[1]: "5ae482db8bb195825efd950eb00569b0", CATS[2]: "c1232c6bc14f44769a18089227e28d8c",
}  # fmt: skip


def book_file(args, relative: str, name: str | None = None) -> Path | None:
    """One of the book's files under the data root (downloaded if need be), or None: a stand-in."""
    folder = str(Path(relative).parent).removeprefix("dlwpt/")
    return data_file(args, relative, url=BOOK_URL + relative.removeprefix("dlwpt/"),
                     md5=MD5[relative], name=name,
                     how_to_get=f"run once online, or copy the book's data/{folder}/ under "
                                f"{args.data_dir}/dlwpt/")  # fmt: skip


if __name__ == "__main__":  # true in a script and in a notebook, false when a test imports us
    args = lesson_args(__doc__, name="02_data_as_tensors")

# %% [markdown]
# ## 1. A table: white wine quality
# `winequality-white.csv` holds 4,898 wines: 11 chemical measurements and a quality score from 0
# to 10, separated by `;` under one header row. `np.loadtxt` reads the numbers, `csv.reader`
# shows the header it skipped, and `torch.from_numpy` wraps the array without copying it. The
# last column is the target; the first 11 are the features.


# %%
def load_table(path: Path, delimiter: str, columns: int, converters=None) -> torch.Tensor:
    """A numeric CSV with one header row, as float32; a malformed file is a one-line error."""
    try:
        with warnings.catch_warnings():  # an empty file: our error below says it better
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(path, np.float32, delimiter=delimiter, skiprows=1,
                               converters=converters, ndmin=2)  # fmt: skip
    except (ValueError, IndexError, UnicodeDecodeError) as error:
        reason = str(error).splitlines()[0]
        raise DataError(f"{path}: expected a '{delimiter}'-separated table of {columns} numeric "
                        f"columns under a header row ({reason})") from None  # fmt: skip
    if len(table) == 0:
        raise DataError(f"{path}: expected rows of {columns} numbers under the header, found none")
    if table.shape[1] != columns:
        raise DataError(f"{path}: expected {columns} columns of numbers, found {table.shape[1]}")
    return torch.from_numpy(table)


def read_wine(path: Path) -> tuple[torch.Tensor, list[str]]:
    """The wine table (4898 x 12) and its column names."""
    table = load_table(path, ";", 12)
    try:
        with open(path, newline="", encoding="utf-8") as file:
            names = next(csv.reader(file, delimiter=";"))
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: expected a header row of column names ({error})") from None
    return table, names


def wine_stand_in() -> tuple[torch.Tensor, list[str]]:
    """4898 made-up wines: 11 measurements and a quality 3..9 that falls with column 6."""
    g = torch.Generator().manual_seed(0)
    features = torch.rand(4898, 11, generator=g) * 50
    quality = (6 + (25 - features[:, 6]) / 12 + torch.randn(4898, generator=g)).round()
    names = [f"measurement {i}" for i in range(11)]
    return torch.cat([features, quality.clamp(3, 9)[:, None]], 1), [*names, "quality"]


if __name__ == "__main__":
    wine_path = book_file(args, WINE)
    table, columns = read_wine(wine_path) if wine_path else wine_stand_in()
    features, target = table[:, :-1], table[:, -1].long()  # quality is the last column
    print(f"columns: {columns}")
    print(f"features shape: {list(features.shape)}")
    print(f"target shape: {list(target.shape)}")

# %% [markdown]
# ## 2. Scaling the features, one-hot encoding the target
# Sulfur dioxide is measured in the hundreds, density near 1: to keep one feature from dominating
# by its units alone, each column becomes its z-score $x' = (x - \mu) / \sigma$ (mean 0, standard
# deviation 1). A class label becomes a one-hot row: ten zeros with a 1 at the label.
# `scatter_(1, index, 1.0)` writes `out[i][index[i][0]] = 1` for every row $i$.


# %%
def z_score(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(dim=0)) / x.std(dim=0)


def one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    return torch.zeros(len(labels), classes).scatter_(1, labels.unsqueeze(1), 1.0)


if __name__ == "__main__":
    normalized = z_score(features)
    print(f"z-scored columns: largest |mean| {normalized.mean(0).abs().max().item():.1e}, "
          f"mean std {normalized.std(0).mean().item():.3f}")  # fmt: skip
    target_one_hot = one_hot(target, 10)
    print(f"one-hot target: {list(target_one_hot.shape)}, "
          f"quality {target[0].item()} -> {target_one_hot[0].int().tolist()}")  # fmt: skip

# %% [markdown]
# ## 3. Boolean masks, group means and a one-feature rule
# `target.le(3)` is a tensor of True/False, one per wine; `&` combines masks and `features[mask]`
# keeps the rows where the mask is True. The mean of each feature per quality group (bad ≤ 3,
# mid 4–6, good ≥ 7) shows which features move with quality: total sulfur dioxide falls.
#
# So try a rule: a wine with less total sulfur dioxide than the mid group's mean is "good", and
# compare it with the truth (quality > 5). Of the wines the rule calls good, the share that are
# good is the **precision** $= \frac{\text{both}}{\text{predicted}}$; of the good wines, the share
# the rule finds is the **recall** $= \frac{\text{both}}{\text{actual}}$.


# %%
SULFUR = 6  # column 6: total sulfur dioxide


def quality_groups(target: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"bad": target.le(3), "mid": target.gt(3) & target.lt(7), "good": target.ge(7)}


def sulfur_rule(features: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Counts, precision and recall of the rule "less sulfur than the mid group => good"."""
    predicted = features[:, SULFUR] < features[quality_groups(target)["mid"], SULFUR].mean()
    actual = target > 5
    both = (predicted & actual).sum().item()
    # The notes swap the two names: their "precision" divides by the actual count and their
    # "recall" by the predicted count. Here each has its standard meaning.
    return {"predicted good": predicted.sum().item(), "actually good": actual.sum().item(),
            "both": both, "precision": round(both / predicted.sum().item(), 3),
            "recall": round(both / actual.sum().item(), 3)}  # fmt: skip


if __name__ == "__main__":
    groups = quality_groups(target)
    print("wines per group: " + ", ".join(f"{k} {m.sum().item()}" for k, m in groups.items()))
    group_means = torch.stack([features[mask].mean(dim=0) for mask in groups.values()])
    print(f"{'feature means per group':<26}{'bad':>9}{'mid':>9}{'good':>9}")
    for name, means in zip(columns, group_means.T):
        print(f"  {name:<24}" + "".join(f"{m:9.2f}" for m in means.tolist()))
    rule = sulfur_rule(features, target)
    for label, value in rule.items():
        print(f"{label}: {value:.3f}" if isinstance(value, float) else f"{label}: {value}")

# %% [markdown]
# ## 4. A time series: bike sharing, one row per hour
# `hour-fixed.csv` has 17 columns per hour for two years: 17,520 rows. A tensor is a block of
# memory plus **strides**: the step, in elements, to the next index along each dimension. The
# table's strides are (17, 1): the next row is 17 numbers on. `view(-1, 24, 17)` reads the same
# memory as 730 days of 24 hours, strides (408, 17, 1), without copying anything. Transposed to
# N × C × L (days × columns × hours), it has the layout 1-D convolutions expect.


# %%
def read_bikes(path: Path) -> torch.Tensor:
    # Column 1 is a date such as 2011-01-01: keep its day of the month as a number.
    return load_table(path, ",", 17, converters={1: lambda text: float(text[8:10])})


def bikes_stand_in() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    hours = torch.rand(17520, 17, generator=g)
    hours[:, 9] = torch.randint(1, 5, (17520,), generator=g).float()  # weather 1..4
    return hours


def by_day(hours: torch.Tensor) -> torch.Tensor:
    return hours.view(-1, 24, hours.shape[1])


if __name__ == "__main__":
    bikes_path = book_file(args, BIKES)
    hours = read_bikes(bikes_path) if bikes_path else bikes_stand_in()
    days = by_day(hours)
    print(f"hours shape: {list(hours.shape)}, stride {hours.stride()}")
    print(f"days shape: {list(days.shape)}, stride {days.stride()}")
    days = days.transpose(1, 2)
    print(f"transposed to N x C x L: {list(days.shape)}, stride {days.stride()}")

# %% [markdown]
# ## 5. A categorical column and a scaled one
# Weather (column 9) is a category from 1 (clear) to 4 (heavy rain), not a quantity: one-hot it
# into 4 channels per hour and append them with `torch.cat`. Temperature (column 10) is a
# quantity: scale it to $[0, 1]$ with $(t - t_{min}) / (t_{max} - t_{min})$, or z-score it.


# %%
def weather_one_hot(days: torch.Tensor) -> torch.Tensor:
    """days x 4 x hours: a 1 in the channel of each hour's weather (1..4)."""
    weather = days[:, 9, :].long() - 1  # days x hours, categories 0..3
    # The notes unsqueeze the weather to days x 24 x 1 before scatter_, which writes every
    # hour's one into the column of hour 0 and leaves hours 1-23 empty. An index shaped
    # days x 1 x 24 one-hots every hour.
    return torch.zeros(days.shape[0], 4, days.shape[2]).scatter_(1, weather.unsqueeze(1), 1.0)


if __name__ == "__main__":
    weather = weather_one_hot(days)
    print(f"weather one-hot: {list(weather.shape)}; one channel set per hour: "
          f"{bool((weather.sum(1) == 1).all())}")  # fmt: skip
    days = torch.cat((days, weather), dim=1)  # 17 + 4 channels
    print(f"with the weather channels appended: {list(days.shape)}")
    temp = days[:, 10, :]
    scaled = (temp - temp.min()) / (temp.max() - temp.min())
    standardized = (temp - temp.mean()) / temp.std()
    print(f"temperature min-max -> [{scaled.min().item():.1f}, {scaled.max().item():.1f}], "
          f"z-score -> mean {standardized.mean().item():.1e}, "
          f"std {standardized.std().item():.3f}")  # fmt: skip

# %% [markdown]
# ## 6. Text: one-hot characters and words
# A character becomes a row of 128 numbers (one per ASCII code) with a single 1. Words need a
# vocabulary: every distinct cleaned word of *Pride and Prejudice*, sorted, numbered in order; a
# line then becomes one row per word, as long as the vocabulary, with a 1 at the word's number.


# %%
def read_book(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: expected UTF-8 text ({error.reason})") from None


def text_stand_in() -> str:
    g = torch.Generator().manual_seed(2)
    words = [f"word{i}" for i in range(500)]
    return "\n".join(" ".join(words[i] for i in torch.randint(500, (12,), generator=g))
                     for _ in range(300))  # fmt: skip


def clean_words(text: str) -> list[str]:
    """Lower-case words with surrounding punctuation (curly quotes included) stripped."""
    punctuation = '.,;:"!?\u201d\u201c_-'
    return [word.strip(punctuation) for word in text.lower().replace("\n", " ").split()]


def char_one_hot(line: str) -> torch.Tensor:
    letters = torch.zeros(len(line), 128)
    for i, letter in enumerate(line.lower()):
        letters[i][ord(letter) if ord(letter) < 128 else 0] = 1  # non-ASCII (a curly quote): 0
    return letters


def word_one_hot(line: str, word_index: dict[str, int]) -> torch.Tensor:
    words = clean_words(line)
    one_hot = torch.zeros(len(words), len(word_index))
    for i, word in enumerate(words):
        one_hot[i][word_index[word]] = 1
    return one_hot


if __name__ == "__main__":
    text_path = book_file(args, TEXT)
    text = read_book(text_path) if text_path else text_stand_in()
    line = text.split("\n")[200].strip()
    print(f"line 200: {line!r}")
    print(f"character one-hot of the line: {list(char_one_hot(line).shape)}")
    word_index = {word: i for i, word in enumerate(sorted(set(clean_words(text))))}
    print(f"vocabulary size: {len(word_index)}")
    print("its words and their numbers: "
          + ", ".join(f"{word} {word_index[word]}" for word in clean_words(line)))  # fmt: skip
    line_one_hot = word_one_hot(line, word_index)
    print(f"word one-hot of the line: {list(line_one_hot.shape)}")

# %% [markdown]
# ## 7. Images: a folder of PNGs becomes one batch
# An image file decodes to height × width × channels (RGB) bytes. PyTorch's layers expect
# channels first, C × H × W, and a batch N × C × H × W; `permute(2, 0, 1)` reorders the
# dimensions by changing strides only, and `torch.stack` puts the images in one tensor. Then
# scale the bytes to $[0, 1]$ and normalize each channel to mean 0 and standard deviation 1.


# %%
def read_image(path: Path) -> torch.Tensor:
    """An image file as an H x W x C uint8 tensor (Pillow decodes, NumPy hands over the pixels)."""
    try:
        with Image.open(path) as image:
            return torch.from_numpy(np.array(image.convert("RGB")))
    except OSError as error:
        raise DataError(f"{path}: expected a PNG image ({error})") from None


def image_batch(images: list[torch.Tensor]) -> torch.Tensor:
    """N x C x H x W floats in [0, 1] from H x W x C uint8 images."""
    # The notes fill their batch with transpose_(0, 2), which gives C x W x H: the cats come out
    # on their side. permute(2, 0, 1) gives C x H x W.
    return torch.stack([image.permute(2, 0, 1) for image in images]).float() / 255


if __name__ == "__main__":
    cat_paths = [book_file(args, relative, name="image-cats folder") for relative in CATS]
    if all(cat_paths):  # every PNG in the folder, in name order
        images = [read_image(path) for path in sorted(cat_paths[0].parent.glob("*.png"))]
    else:  # the stand-in: three 256 x 256 RGB noise images
        g = torch.Generator().manual_seed(3)
        images = list(torch.randint(0, 256, (3, 256, 256, 3), dtype=torch.uint8, generator=g))
    print(f"one image as read: H x W x C = {list(images[0].shape)}, {images[0].dtype}")
    batch = image_batch(images)
    print(f"batch: N x C x H x W = {list(batch.shape)}, values in [0, 1]")
    mean, std = batch.mean(dim=(0, 2, 3), keepdim=True), batch.std(dim=(0, 2, 3), keepdim=True)
    batch_normalized = (batch - mean) / std
    print(f"channel means {mean.flatten().numpy().round(3)} -> after normalizing "
          f"{batch_normalized.mean(dim=(0, 2, 3)).numpy().round(3)}, "
          f"std {batch_normalized.std(dim=(0, 2, 3)).numpy().round(3)}")  # fmt: skip

# %% [markdown]
# ## 8. What the lesson found
# The shapes and the rule's precision and recall go to `metrics.json`.

# %%
if __name__ == "__main__":
    metrics = {
        "features_shape": list(features.shape),
        **{key.replace(" ", "_"): value for key, value in rule.items()},
        "hours_shape": list(hours.shape),
        "days_shape": list(by_day(hours).shape),
        "vocabulary_size": len(word_index),
        "word_one_hot_shape": list(line_one_hot.shape),
        "image_batch_shape": list(batch.shape),
    }
    write_metrics(args.out, metrics, headline="precision")
