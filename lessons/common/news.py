"""AG_NEWS for the text lessons: `train_rows, test_rows, source = load_ag_news(args)`.

Rows are `(label 0-3, "title description")`, as torchtext gave them. Both CSV files under
`<data root>/AG_NEWS/` (downloaded when missing and allowed), or one of them split 6,000 / 1,600
with a fixed shuffle, or, with neither, a deterministic four-topic stand-in, announced once.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import torch

from common.data import DataError, DataUnavailable, fetch_file, open_text, use_stand_in

CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
# Where torchtext downloaded AG_NEWS from, with its checksums (torchtext/datasets/ag_news.py).
AG_NEWS_URL = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/"
MD5 = {"train": "b1a00f826fdfbd249f79597b59e1dc12", "test": "d52ea96a97a2d943681189a97654912d"}
SPLIT_TRAIN_ROWS = 6000  # when only test.csv exists: train on 6,000 of its rows, hold out the rest


def read_ag_news_csv(path: Path) -> list[tuple[int, str]]:
    """(label 0-3, "title description") per row; any other layout is a one-line DataError."""
    rows = []
    with open_text(path) as file:
        try:
            for number, row in enumerate(csv.reader(file), start=1):
                if len(row) != 3 or row[0] not in ("1", "2", "3", "4"):
                    raise DataError(f"{path} line {number}: expected 3 columns (class 1-4, "
                                    f"title, description), got {row[:3]!r}")  # fmt: skip
                rows.append((int(row[0]) - 1, f"{row[1]} {row[2]}"))
        except (csv.Error, UnicodeDecodeError) as error:
            raise DataError(f"{path}: not a readable AG_NEWS CSV file ({error})") from None
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def stand_in_news(count: int, seed: int) -> list[tuple[int, str]]:
    """Synthetic four-topic texts: common words, words of the text's topic, a few of another's;
    one label in six is drawn at random, so accuracy stays well below 1, as on real news."""
    topics = ["minister election troops ceasefire embassy treaty", "match coach striker goal "
              "league olympic", "shares profit investors earnings merger bank", "software "
              "internet computer space chip phone"]  # fmt: skip
    draw, rows = random.Random(seed), []
    for label in [draw.randrange(4) for _ in range(count)]:
        pool = 2 * topics[label].split() + ("the a of to in on " + draw.choice(topics)).split()
        text = " ".join(draw.choices(pool, k=draw.randint(8, 30))).capitalize() + "."
        rows.append((draw.randrange(4) if draw.random() < 1 / 6 else label, text))
    return rows


def load_ag_news(args) -> tuple[list, list, str]:
    """(train rows, test rows, where they came from): both files, one split, or the stand-in.
    `args` needs `data_dir` and `offline` (a lesson's parsed flags)."""
    files = {}
    for split in ("train", "test"):
        try:
            url, md5 = f"{AG_NEWS_URL}{split}.csv", MD5[split]
            files[split] = fetch_file(args.data_dir, f"AG_NEWS/{split}.csv", url=url, md5=md5,
                                      offline=args.offline)  # fmt: skip
        except DataUnavailable as error:
            files[split], reason = None, str(error)
    if files["train"] and files["test"]:
        return read_ag_news_csv(files["train"]), read_ag_news_csv(files["test"]), "AG_NEWS"
    if present := files["test"] or files["train"]:
        rows = read_ag_news_csv(present)
        if len(rows) < 10:
            raise DataError(f"{present}: only {len(rows)} rows, too few to split for training")
        # A fixed shuffle (not --seed): every run trains and tests on the same rows.
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0)).tolist()
        cut = min(SPLIT_TRAIN_ROWS, len(rows) * 4 // 5)
        train, test = [rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]
        print(f"NOTICE: {reason}: training on {len(train):,} rows of the real {present.name} and "
              f"testing on the other {len(test):,} (held out). Accuracies are lower than with "
              "the 120,000 training rows.")  # fmt: skip
        return train, test, f"AG_NEWS {present.name} split {len(train)}/{len(test)}"
    use_stand_in("AG_NEWS", f"files are missing ({reason})", "run once with network access, "
                 f"or put train.csv and test.csv under {args.data_dir}/AG_NEWS/")  # fmt: skip
    return stand_in_news(6000, seed=1), stand_in_news(1600, seed=2), "stand-in"
