"""Lesson 02: the section functions, the reference values on the real files, malformed files."""

from __future__ import annotations

import pytest
import torch
from conftest import load_lesson, one_line_error, run_lesson_cli, run_script

from common.data import DataError

STEM = "02_data_as_tensors"
WINE = "dlwpt/p1ch4/tabular-wine/winequality-white.csv"
BIKES = "dlwpt/p1ch4/bike-sharing-dataset/hour-fixed.csv"
TEXT = "dlwpt/p1ch4/jane-austen/1342-0.txt"
CATS = [f"dlwpt/p1ch4/image-cats/cat{number}.png" for number in (1, 2, 3)]
# The reference values of the real files: 12 in all.
RULE = {"predicted good": 2727, "actually good": 3258, "both": 2018,
        "precision": 0.740, "recall": 0.619}  # fmt: skip
SHAPES = {"features shape": [4898, 11], "target shape": [4898], "hours": [17520, 17],
          "hours stride": (17, 1), "days": [730, 24, 17], "days stride": (408, 17, 1),
          "vocabulary size": 7261}  # fmt: skip
REFERENCE_COUNT = len(RULE) + len(SHAPES)


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def test_clean_words_strips_punctuation_and_curly_quotes(lesson):
    words = lesson.clean_words("\u201cImpossible, Mr. Bennet!\u201d\nWhy-")
    assert words == ["impossible", "mr", "bennet", "why"]


def test_z_score_and_one_hot(lesson):
    x = torch.tensor([[1.0, 100.0], [2.0, 300.0], [3.0, 500.0]])
    z = lesson.z_score(x)
    assert torch.allclose(z.mean(0), torch.zeros(2), atol=1e-6)
    assert torch.allclose(z.std(0), torch.ones(2))
    assert lesson.one_hot(torch.tensor([0, 2]), 3).tolist() == [[1, 0, 0], [0, 0, 1]]


def test_the_rule_names_precision_and_recall_correctly(lesson):
    """4 predicted good, 5 actually good, 3 both: precision 3/4, recall 3/5 (not swapped)."""
    features = torch.zeros(6, 11)
    features[:, lesson.SULFUR] = torch.tensor([10.0, 10, 10, 30, 10, 30])  # mid mean 18
    target = torch.tensor([6, 6, 4, 6, 7, 6])
    assert lesson.sulfur_rule(features, target) == {
        "predicted good": 4, "actually good": 5, "both": 3, "precision": 0.75, "recall": 0.6,
    }  # fmt: skip


def test_by_day_is_a_view_with_the_day_strides(lesson):
    hours = torch.arange(17520 * 17.0).view(17520, 17)
    days = lesson.by_day(hours)
    assert list(days.shape) == [730, 24, 17] and days.stride() == (408, 17, 1)
    assert days.data_ptr() == hours.data_ptr()  # no copy
    assert torch.equal(days[1, 0], hours[24])  # day 1 starts at hour 24


def test_weather_one_hot_sets_every_hour(lesson):
    days = torch.zeros(3, 17, 24)
    days[:, 9, :] = torch.randint(1, 5, (3, 24), generator=torch.Generator().manual_seed(0))
    weather = lesson.weather_one_hot(days)
    assert weather.shape == (3, 4, 24)
    assert (weather.sum(1) == 1).all()  # the notes' version leaves hours 1-23 empty
    assert torch.equal(weather.argmax(1), days[:, 9, :].long() - 1)


def test_text_one_hots(lesson):
    chars = lesson.char_one_hot("\u201cAb")
    assert chars.shape == (3, 128) and chars.argmax(1).tolist() == [0, ord("a"), ord("b")]
    words = lesson.word_one_hot("The cat, the end.", {"cat": 0, "end": 1, "the": 2})
    assert words.argmax(1).tolist() == [2, 0, 2, 1] and words.sum().item() == 4


def test_image_batch_is_channels_first(lesson):
    image = torch.arange(2 * 3 * 3, dtype=torch.uint8).view(2, 3, 3)  # H=2, W=3, RGB
    batch = lesson.image_batch([image, image])
    assert batch.shape == (2, 3, 2, 3)  # N x C x H x W, not C x W x H
    assert batch[1, 2, 1, 0].item() == pytest.approx(image[1, 0, 2].item() / 255)


def test_the_quick_run_on_the_stand_ins(quick_run):
    run = quick_run(STEM)
    assert run.printed.count("NOTICE") == 4  # wine, bikes, text, and the image folder as one
    assert run.printed.count("image-cats folder") == 1
    assert run.metrics["data"] == "stand-in" and len(run.metrics["stand_ins"]) == 4
    # The shapes hold on the stand-ins too; the rule's counts are the stand-in's own.
    assert run.line("features shape: ") == "features shape: [4898, 11]"
    assert run.line("target shape: ") == "target shape: [4898]"
    assert run.line("hours shape: ") == "hours shape: [17520, 17], stride (17, 1)"
    assert run.line("days shape: ") == "days shape: [730, 24, 17], stride (408, 17, 1)"
    assert run.line("weather one-hot: ").endswith("one channel set per hour: True")
    assert run.line("with the weather channels appended: ").endswith("[730, 21, 24]")
    assert run.metrics["image_batch_shape"] == [3, 3, 256, 256]
    rule = run.globals["rule"]
    assert run.line("precision: ") == f"precision: {rule['precision']:.3f}"
    assert rule["precision"] == round(rule["both"] / rule["predicted good"], 3)
    assert run.metrics["precision"] == rule["precision"]
    assert run.globals["batch_normalized"].mean(dim=(0, 2, 3)).abs().max() < 1e-5


@pytest.mark.real_data
def test_the_wine_reference_values(lesson, real_data_dir):
    table, names = lesson.read_wine(real_data_dir / WINE)
    features, target = table[:, :-1], table[:, -1].long()
    assert list(features.shape) == SHAPES["features shape"]
    assert list(target.shape) == SHAPES["target shape"]
    assert names[lesson.SULFUR] == "total sulfur dioxide" and names[-1] == "quality"
    assert lesson.sulfur_rule(features, target) == RULE


@pytest.mark.real_data
def test_the_bike_reference_values(lesson, real_data_dir):
    hours = lesson.read_bikes(real_data_dir / BIKES)
    assert list(hours.shape) == SHAPES["hours"] and hours.stride() == SHAPES["hours stride"]
    days = lesson.by_day(hours)
    assert list(days.shape) == SHAPES["days"] and days.stride() == SHAPES["days stride"]
    assert hours[0, 1].item() == 1 and hours[-1, 1].item() == 31  # 2011-01-01 ... 2012-12-31
    weather = lesson.weather_one_hot(days.transpose(1, 2))
    assert (weather.sum(1) == 1).all()


@pytest.mark.real_data
def test_the_text_and_image_reference_values(lesson, real_data_dir):
    text = lesson.read_book(real_data_dir / TEXT)
    word_index = {word: i for i, word in enumerate(sorted(set(lesson.clean_words(text))))}
    assert len(word_index) == SHAPES["vocabulary size"]
    line = text.split("\n")[200].strip()
    assert lesson.char_one_hot(line).shape == (70, 128)
    assert lesson.word_one_hot(line, word_index).shape == (11, 7261)
    batch = lesson.image_batch([lesson.read_image(real_data_dir / cat) for cat in CATS])
    assert batch.shape == (3, 3, 256, 256) and 0 <= batch.min() < batch.max() <= 1


@pytest.mark.real_data
def test_the_lesson_prints_the_reference_values_on_the_real_files(real_data_dir, tmp_path):
    run = run_script(STEM, tmp_path, "--data-dir", str(real_data_dir))
    assert "NOTICE" not in run.printed and "data" not in run.metrics
    for label, value in RULE.items():
        shown = f"{value:.3f}" if isinstance(value, float) else value
        assert run.line(f"{label}: ") == f"{label}: {shown}"
    assert run.line("features shape: ") == "features shape: [4898, 11]"
    assert run.line("hours shape: ") == "hours shape: [17520, 17], stride (17, 1)"
    assert run.line("days shape: ") == "days shape: [730, 24, 17], stride (408, 17, 1)"
    assert run.line("vocabulary size: ") == "vocabulary size: 7261"
    assert run.line("word one-hot of the line: ") == "word one-hot of the line: [11, 7261]"
    # total sulfur dioxide falls as quality rises
    assert "total sulfur dioxide       170.60   141.83   125.25" in run.printed
    assert run.metrics["precision"] == 0.74 and run.metrics["recall"] == 0.619
    assert REFERENCE_COUNT == 12


def _root_with(tmp_path, relative, content: bytes, *others: str):
    """A data root holding `content` at `relative` (and at each of `others`)."""
    root = tmp_path / "data"
    for path in (relative, *others):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    return root


WINE_ROW = b"7;0.27;0.36;20.7;0.045;45;170;1.001;3;0.45;8.8;6\n"


@pytest.mark.parametrize(
    ("relative", "content"),
    [
        (WINE, b"a;b;c\n1;2;3\n"),  # too few columns
        (WINE, b"fixed acidity;quality\n7.0;x;y\n"),  # not numbers
        (WINE, b"header\n" + WINE_ROW * 3 + WINE_ROW[:12]),  # truncated mid-row
        (WINE, b"header\n"),  # a header and no rows
        (WINE, b"\xff\xfe;header\n" + WINE_ROW),  # not UTF-8 text
        (BIKES, b"\x1f\x8b\x08\x00garbage"),  # a gzip file where a CSV should be
        (TEXT, b"\xff\xfe\x00P\x00r\x00i\x00d\x00e"),  # UTF-16, not UTF-8
    ],
)
def test_a_malformed_file_stops_the_lesson_with_a_data_error_naming_it(
    tmp_path, monkeypatch, relative, content
):
    monkeypatch.delenv("LESSONS_REQUIRE_REAL_DATA", raising=False)  # the others: stand-ins
    root = _root_with(tmp_path, relative, content)
    with pytest.raises(DataError, match=relative.split("/")[-1]):
        run_script(STEM, tmp_path / "out", "--data-dir", str(root), "--no-download")


def test_a_file_in_the_image_folder_that_is_not_an_image_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.delenv("LESSONS_REQUIRE_REAL_DATA", raising=False)
    root = _root_with(tmp_path, CATS[0], b"not a png", *CATS[1:])
    with pytest.raises(DataError, match=r"cat1\.png: expected a PNG image"):
        run_script(STEM, tmp_path / "out", "--data-dir", str(root), "--no-download")


def test_a_malformed_file_on_the_command_line_is_one_line(tmp_path):
    root = _root_with(tmp_path, WINE, b"a;b\n1;2\n")
    result = run_lesson_cli(STEM, "--out", str(tmp_path / "out"), "--data-dir", str(root))
    assert "winequality-white.csv" in one_line_error(result)
