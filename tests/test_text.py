"""common.text: torchtext 0.18's tokenizer and vocabulary, reproduced exactly.

The expected tokens below are worked out by hand from torchtext's "basic_english" rules (lower-case;
' . , ( ) ! ? become tokens; " vanishes; ; : and "<br />" become spaces; split on whitespace).
Every behaviour test runs on the re-implementation and, where torchtext works (the
requirements-torchtext.txt environment), on torchtext itself, so the pins are torchtext's own
behaviour. The last tests compare both on large real corpora; with LESSONS_TORCHTEXT_MUST_RUN=1
(CI's torchtext environment) they fail instead of skipping when torchtext is unusable.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common import LessonError, text

MUST_RUN_ENV = "LESSONS_TORCHTEXT_MUST_RUN"
REPO_ROOT = Path(__file__).resolve().parents[1]


def torchtext_functions():
    """torchtext's (get_tokenizer, build_vocab_from_iterator), or None when it cannot be used."""
    functions, _ = text._load_torchtext()
    return None if functions is None else functions[:2]


TORCHTEXT = torchtext_functions()
IMPLEMENTATIONS = {"own": (text.own_get_tokenizer, text.own_build_vocab_from_iterator)}
if TORCHTEXT is not None:
    IMPLEMENTATIONS["torchtext"] = TORCHTEXT


def require_torchtext():
    """torchtext's functions; skip without it, unless LESSONS_TORCHTEXT_MUST_RUN=1 (then fail)."""
    if TORCHTEXT is None:
        reason = f"torchtext is not usable here ({text._load_torchtext()[1]})"
        if os.environ.get(MUST_RUN_ENV) == "1":
            pytest.fail(f"{reason}, but {MUST_RUN_ENV}=1 says the comparison must run")
        pytest.skip(f"{reason}: install requirements-torchtext.txt to compare")
    return TORCHTEXT


@pytest.fixture(params=list(IMPLEMENTATIONS))
def impl(request):
    return IMPLEMENTATIONS[request.param]


# --------------------------------------------------------------------------- tokenizer
BASIC_ENGLISH_CASES = [
    ("You can now install TorchText using pip!",
     ["you", "can", "now", "install", "torchtext", "using", "pip", "!"]),
    ("Don't STOP", ["don", "'", "t", "stop"]),
    ("rock 'n' roll", ["rock", "'", "n", "'", "roll"]),
    ('He said "hi".', ["he", "said", "hi", "."]),
    ('""quoted""', ["quoted"]),
    ("U.S. stocks: up 3.5% (again); wow?!",
     ["u", ".", "s", ".", "stocks", "up", "3", ".", "5%", "(", "again", ")", "wow", "?", "!"]),
    ("1,000,000 dollars", ["1", ",", "000", ",", "000", "dollars"]),
    ("$36.5bn #36;10 million", ["$36", ".", "5bn", "#36", "10", "million"]),
    ("Line one<br />Line TWO<BR />three", ["line", "one", "line", "two", "three"]),
    ("a<br/>b", ["a<br/>b"]),
    ("  many   spaces\tand\ttabs\n\nnew  lines ",
     ["many", "spaces", "and", "tabs", "new", "lines"]),
    ("a second\\team", ["a", "second\\team"]),
    ("e-mail/web-site & co_op", ["e-mail/web-site", "&", "co_op"]),
    ("...", [".", ".", "."]),
    ("", []),
    ("   ", []),
    ("Café Zürich — ÉLAN naïve", ["café", "zürich", "—", "élan", "naïve"]),
    ("it’s “curly”", ["it’s", "“curly”"]),
    ("non\u00a0breaking\u2003space", ["non", "breaking", "space"]),
    ("ΑΘΗΝΑ Straße İ", ["αθηνα", "straße", "i\u0307"]),
    ("東京 株価、上昇!", ["東京", "株価、上昇", "!"]),
]  # fmt: skip


@pytest.mark.parametrize(("line", "expected"), BASIC_ENGLISH_CASES)
def test_basic_english(impl, line, expected):
    get_tokenizer, _ = impl
    assert get_tokenizer("basic_english")(line) == expected


def test_split_tokenizer_is_plain_whitespace_split(impl):
    get_tokenizer, _ = impl
    tokenize = get_tokenizer(None)
    assert tokenize("Hello, World!  It's\tme") == ["Hello,", "World!", "It's", "me"]
    assert tokenize("") == []


def test_callable_tokenizer_is_returned_as_is_and_bad_names_are_refused(impl):
    get_tokenizer, _ = impl
    assert get_tokenizer(str.upper) is str.upper
    with pytest.raises(ValueError):
        get_tokenizer("basic_english", language="de")
    with pytest.raises(ValueError):
        get_tokenizer("no-such-tokenizer")


# --------------------------------------------------------------------------- vocabulary order
CORPUS = [["b", "a", "c", "a", "b", "d"], ["c", "e"]]  # a b c twice, d e once


def itos(impl, iterator, **options):
    _, build = impl
    return build(iterator, **options).get_itos()


def test_order_is_frequency_then_token_string_not_first_seen(impl):
    assert itos(impl, CORPUS) == ["a", "b", "c", "d", "e"]
    assert itos(impl, [["z", "z", "a", "m", "m", "m"]]) == ["m", "z", "a"]
    # Ties compare code points: upper case before lower case, "10" before "9".
    assert itos(impl, [["b", "B", "a", "9", "10", "é"]]) == ["10", "9", "B", "a", "b", "é"]


def test_specials_first_or_last(impl):
    specials = ["<unk>", "<pad>"]
    assert itos(impl, CORPUS, specials=specials) == ["<unk>", "<pad>", "a", "b", "c", "d", "e"]
    assert itos(impl, CORPUS, specials=specials, special_first=False) == [
        "a", "b", "c", "d", "e", "<unk>", "<pad>",
    ]  # fmt: skip
    # A special that also occurs in the text appears once, in its special slot.
    assert itos(impl, [["x", "<unk>", "<unk>"]], specials=["<unk>"]) == ["<unk>", "x"]


def test_min_freq(impl):
    assert itos(impl, CORPUS, min_freq=2) == ["a", "b", "c"]
    assert itos(impl, CORPUS, min_freq=3) == []
    assert itos(impl, CORPUS, min_freq=3, specials=["<unk>"]) == ["<unk>"]


def test_max_tokens_counts_the_specials(impl):
    assert itos(impl, CORPUS, max_tokens=2) == ["a", "b"]
    assert itos(impl, CORPUS, max_tokens=4, specials=["<unk>"]) == ["<unk>", "a", "b", "c"]
    # torchtext cuts before applying min_freq and before removing specials found in the text:
    assert itos(impl, CORPUS, max_tokens=4, min_freq=2) == ["a", "b", "c"]
    assert itos(impl, [["<unk>"] * 3 + ["x"]], max_tokens=2, specials=["<unk>"]) == ["<unk>"]
    with pytest.raises(AssertionError):
        itos(impl, CORPUS, max_tokens=1, specials=["<unk>"])


def test_iterator_of_strings_counts_characters_like_torchtext(impl):
    assert itos(impl, iter(["abca"])) == ["a", "b", "c"]


def test_duplicate_specials_are_an_error(impl):
    with pytest.raises(RuntimeError, match="Duplicate token"):
        itos(impl, CORPUS, specials=["<unk>", "<unk>"])


# --------------------------------------------------------------------------- vocabulary lookups
def test_lookups(impl):
    _, build = impl
    vocab = build(iter(CORPUS), specials=["<unk>"])
    assert len(vocab) == 6
    assert vocab["<unk>"] == 0 and vocab["a"] == 1 and vocab["e"] == 5
    assert vocab(["c", "a"]) == vocab.lookup_indices(["c", "a"]) == [3, 1]
    assert vocab.lookup_token(2) == "b"
    assert vocab.lookup_tokens([5, 0]) == ["e", "<unk>"]
    assert "a" in vocab and "zzz" not in vocab
    assert vocab.get_stoi() == {token: index for index, token in enumerate(vocab.get_itos())}
    for bad_index in (6, -1):
        with pytest.raises(RuntimeError, match="out of bounds"):
            vocab.lookup_token(bad_index)


def test_unknown_tokens_without_and_with_a_default_index(impl):
    _, build = impl
    vocab = build(iter(CORPUS), specials=["<unk>"])
    assert vocab.get_default_index() is None
    with pytest.raises(RuntimeError, match="Token zzz not found and default index is not set"):
        vocab["zzz"]
    with pytest.raises(RuntimeError, match="zzz"):
        vocab(["a", "zzz"])
    vocab.set_default_index(vocab["<unk>"])
    assert vocab.get_default_index() == 0
    assert vocab["zzz"] == 0
    assert vocab(["a", "zzz", "e"]) == [1, 0, 5]
    assert "zzz" not in vocab and len(vocab) == 6  # a lookup never adds tokens
    vocab.set_default_index(None)
    with pytest.raises(RuntimeError):
        vocab["zzz"]


def test_own_unknown_token_error_is_a_lesson_error():
    vocab = text.own_build_vocab_from_iterator([["a"]])
    with pytest.raises(LessonError, match="set_default_index"):
        vocab["missing"]
    assert issubclass(text.VocabError, RuntimeError)


def test_append_and_insert_tokens(impl):
    _, build = impl
    vocab = build(iter(CORPUS))
    vocab.append_token("f")
    vocab.insert_token("<pad>", 0)
    assert vocab.get_itos() == ["<pad>", "a", "b", "c", "d", "e", "f"]
    assert vocab["f"] == 6 and vocab["a"] == 1
    with pytest.raises(RuntimeError, match="already exists"):
        vocab.append_token("a")


# --------------------------------------------------------------------------- backend choice
def run_python(code: str, **env) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT / "lessons",
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        encoding="utf-8",
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_backend_is_named_and_matches_what_is_installed():
    if TORCHTEXT is None:
        assert text.BACKEND == "lessons.common.text (torchtext-compatible)"
        assert text.build_vocab_from_iterator is text.own_build_vocab_from_iterator
        assert text.TORCHTEXT_UNUSABLE_REASON
    else:
        assert text.BACKEND.startswith("torchtext 0.18")
        assert text.build_vocab_from_iterator is TORCHTEXT[1]


def test_a_broken_torchtext_falls_back_to_the_own_implementation():
    # sys.modules[name] = None makes `import name` raise ImportError, like a missing package.
    code = "import sys; sys.modules['torchtext'] = None; import common.text as t; print(t.BACKEND)"
    assert run_python(code) == "lessons.common.text (torchtext-compatible)"
    code = "import common.text as t; print(t.BACKEND)"
    assert (
        run_python(code, LESSONS_TEXT_BACKEND="own") == "lessons.common.text (torchtext-compatible)"
    )


def test_importing_prints_nothing():
    assert run_python("import common.text") == ""


# --------------------------------------------------------------------------- against torchtext
def corpus_lines(data_root: Path) -> dict[str, list[str]]:
    """AG_NEWS test.csv (title + description per row) and the Jane Austen novel, line by line."""
    with open(data_root / "AG_NEWS" / "test.csv", encoding="utf-8", newline="") as file:
        news = [f"{title} {description}" for _, title, description in csv.reader(file)]
    austen = (data_root / "dlwpt/p1ch4/jane-austen/1342-0.txt").read_text(encoding="utf-8")
    return {"AG_NEWS test.csv": news, "Pride and Prejudice": austen.splitlines()}


@pytest.fixture(scope="module")
def corpora():
    root = os.environ.get("LESSONS_DATA_DIR", "").strip()
    if not root:
        if (
            os.environ.get(MUST_RUN_ENV) == "1"
            or os.environ.get("LESSONS_REAL_DATA_TESTS_MUST_RUN") == "1"
        ):
            pytest.fail("LESSONS_DATA_DIR is not set, but the torchtext comparison must run")
        pytest.skip("LESSONS_DATA_DIR is not set: no real corpus to compare on")
    return corpus_lines(Path(root))


@pytest.mark.real_data
def test_tokens_and_indices_equal_torchtexts_on_real_corpora(corpora):
    tt_get_tokenizer, tt_build = require_torchtext()
    own_tokenize = text.own_get_tokenizer("basic_english")
    tt_tokenize = tt_get_tokenizer("basic_english")
    for name, lines in corpora.items():
        assert len(lines) > 5000, name
        own_tokens = [own_tokenize(line) for line in lines]
        tt_tokens = [tt_tokenize(line) for line in lines]
        for number, (mine, theirs) in enumerate(zip(own_tokens, tt_tokens)):
            assert mine == theirs, f"{name} line {number + 1}: {lines[number]!r}"
        for options in (
            dict(specials=["<unk>"]),
            dict(specials=["<unk>", "<pad>"], special_first=False, min_freq=3),
            dict(specials=["<pad>", "<unk>"], max_tokens=2000),
            dict(min_freq=2, max_tokens=500),
        ):
            mine = text.own_build_vocab_from_iterator(iter(own_tokens), **options)
            theirs = tt_build(iter(tt_tokens), **options)
            assert mine.get_itos() == theirs.get_itos(), f"{name} {options}"
            assert mine.get_stoi() == theirs.get_stoi(), f"{name} {options}"
            for vocab in (mine, theirs):
                vocab.set_default_index(len(vocab) - 1)
            flat = [token for tokens in own_tokens for token in tokens] + ["never-seen-token"]
            assert mine(flat) == theirs(flat), f"{name} {options}"
        assert len(mine) == 500
