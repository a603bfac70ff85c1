"""The text pipeline of the retired `torchtext`: a tokenizer and a vocabulary, same API.

    from common.text import get_tokenizer, build_vocab_from_iterator
    tokenizer = get_tokenizer("basic_english")
    vocab = build_vocab_from_iterator(map(tokenizer, lines), specials=["<unk>"])
    vocab.set_default_index(vocab["<unk>"])
    ids = vocab(tokenizer("Wall St. Bears Claw Back Into the Black"))

torchtext's last release (0.18) loads only with torch 2.3. When it is importable and works, this
module hands out torchtext's own `get_tokenizer` and `build_vocab_from_iterator`; otherwise it uses
the re-implementation below, which reproduces torchtext 0.18 exactly: the same normalisation
rules for "basic_english", the same vocabulary order (frequency, most frequent first; ties by
the token's string order), the same `min_freq`, `specials`, `special_first` and `max_tokens`
semantics and the same `Vocab` methods. `BACKEND` names the one in use;
`LESSONS_TEXT_BACKEND=own` forces the re-implementation.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable

from common import LessonError

BACKEND_ENV = "LESSONS_TEXT_BACKEND"
OWN_BACKEND = "lessons.common.text (torchtext-compatible)"


class VocabError(LessonError, RuntimeError):
    """A vocabulary lookup that cannot be answered (torchtext raises RuntimeError here too)."""


# --------------------------------------------------------------------------- tokenizers
# torchtext 0.18's `_basic_english_normalize`: lower-case, then these substitutions in this
# order, then split on whitespace. Apostrophes and . , ( ) ! ? become tokens of their own,
# double quotes vanish, ; and : become spaces, "<br />" (HTML line breaks) becomes a space.
_BASIC_ENGLISH_RULES = [
    (re.compile(pattern), replacement)
    for pattern, replacement in [
        (r"\'", " '  "),
        (r"\"", ""),
        (r"\.", " . "),
        (r"<br \/>", " "),
        (r",", " , "),
        (r"\(", " ( "),
        (r"\)", " ) "),
        (r"\!", " ! "),
        (r"\?", " ? "),
        (r"\;", " "),
        (r"\:", " "),
        (r"\s+", " "),
    ]
]


def basic_english_normalize(line: str) -> list[str]:
    """Tokens of `line` by torchtext's "basic_english" rules."""
    line = line.lower()
    for pattern, replacement in _BASIC_ENGLISH_RULES:
        line = pattern.sub(replacement, line)
    return line.split()


def split_tokenizer(line: str) -> list[str]:
    """torchtext's default tokenizer (`get_tokenizer(None)`): `str.split()`."""
    return line.split()


def own_get_tokenizer(tokenizer: str | Callable | None, language: str = "en") -> Callable:
    """torchtext's `get_tokenizer` for None, "basic_english" and callables."""
    if tokenizer is None:
        return split_tokenizer
    if tokenizer == "basic_english":
        if language != "en":
            raise ValueError("Basic normalization is only available for English (en)")
        return basic_english_normalize
    if callable(tokenizer):
        return tokenizer
    raise ValueError(
        f"Requested tokenizer {tokenizer}: this re-implementation offers None (split on "
        'whitespace), "basic_english" or a callable (install requirements-torchtext.txt for '
        "spacy, moses, toktok, revtok)"
    )


# --------------------------------------------------------------------------- vocabulary
class Vocab:
    """Maps tokens to indices and back, like `torchtext.vocab.Vocab`."""

    def __init__(self, tokens: Iterable[str]):
        self._itos: list[str] = []
        self._stoi: dict[str, int] = {}
        self._default_index: int | None = None
        for token in tokens:
            if token in self._stoi:
                raise VocabError(f"Duplicate token found in tokens list: {token}")
            self._stoi[token] = len(self._itos)
            self._itos.append(token)

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token: str) -> bool:
        return token in self._stoi

    def __getitem__(self, token: str) -> int:
        index = self._stoi.get(token)
        if index is not None:
            return index
        if self._default_index is None:
            raise VocabError(
                f"Token {token} not found and default index is not set "
                "(call vocab.set_default_index(vocab['<unk>']) to map unknown tokens)"
            )
        return self._default_index

    def forward(self, tokens: list[str]) -> list[int]:
        return self.lookup_indices(tokens)

    __call__ = forward

    def lookup_indices(self, tokens: list[str]) -> list[int]:
        return [self[token] for token in tokens]

    def lookup_token(self, index: int) -> str:
        if not 0 <= index < len(self._itos):
            raise VocabError(
                f"Specified index {index} is out of bounds for vocab of size {len(self._itos)}"
            )
        return self._itos[index]

    def lookup_tokens(self, indices: list[int]) -> list[str]:
        return [self.lookup_token(index) for index in indices]

    def set_default_index(self, index: int | None) -> None:
        """The index unknown tokens map to (None: unknown tokens raise)."""
        self._default_index = index

    def get_default_index(self) -> int | None:
        return self._default_index

    def insert_token(self, token: str, index: int) -> None:
        if not 0 <= index <= len(self._itos):
            raise VocabError(
                f"Specified index {index} is out of bounds for vocab of size {len(self._itos)}"
            )
        if token in self._stoi:
            raise VocabError(
                f"Token {token} already exists in the Vocab with index: {self._stoi[token]}"
            )
        self._itos.insert(index, token)
        self._stoi = {token: position for position, token in enumerate(self._itos)}

    def append_token(self, token: str) -> None:
        if token in self._stoi:
            raise VocabError(
                f"Token {token} already exists in the Vocab with index: {self._stoi[token]}"
            )
        self._stoi[token] = len(self._itos)
        self._itos.append(token)

    def get_stoi(self) -> dict[str, int]:
        return dict(self._stoi)

    def get_itos(self) -> list[str]:
        return list(self._itos)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens, default index {self._default_index})"


def own_vocab(
    ordered_dict: dict[str, int],
    min_freq: int = 1,
    specials: list[str] | None = None,
    special_first: bool = True,
) -> Vocab:
    """torchtext's `vocab()` factory: keep the dict's order, drop rare tokens, add specials."""
    specials = specials or []
    for token in specials:  # a special that also occurs in the text keeps only its special slot
        ordered_dict.pop(token, None)
    tokens = [token for token, freq in ordered_dict.items() if freq >= min_freq]
    tokens = specials + tokens if special_first else tokens + specials
    return Vocab(tokens)


def own_build_vocab_from_iterator(
    iterator: Iterable[Iterable[str]],
    min_freq: int = 1,
    specials: list[str] | None = None,
    special_first: bool = True,
    max_tokens: int | None = None,
) -> Vocab:
    """torchtext's `build_vocab_from_iterator`, step by step as torchtext 0.18 does it.

    Counts every token; sorts by descending count, ties by the token string; keeps the first
    `max_tokens - len(specials)` when `max_tokens` is given (before `min_freq` is applied and
    before specials found in the text are removed, as in torchtext); then `own_vocab`.
    """
    counter: Counter[str] = Counter()
    for tokens in iterator:
        counter.update(tokens)
    specials = specials or []
    by_frequency = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    if max_tokens is not None:
        if len(specials) >= max_tokens:
            raise AssertionError(
                "len(specials) >= max_tokens, so the vocab will be entirely special tokens."
            )
        by_frequency = by_frequency[: max_tokens - len(specials)]
    return own_vocab(OrderedDict(by_frequency), min_freq, specials, special_first)


# --------------------------------------------------------------------------- backend choice
def _load_torchtext():
    """torchtext's functions when it imports and works with this torch, else (None, why)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its deprecation notice; we say which backend runs
            import torchtext

            torchtext.disable_torchtext_deprecation_warning()
            from torchtext.data.utils import get_tokenizer as tt_get_tokenizer
            from torchtext.vocab import build_vocab_from_iterator as tt_build

            probe = tt_build([tt_get_tokenizer("basic_english")("A probe, a PROBE.")])
            if probe.get_itos() != ["a", "probe", ",", "."]:
                return None, f"torchtext {torchtext.__version__} gave unexpected results"
        return (tt_get_tokenizer, tt_build, torchtext.__version__), None
    except Exception as error:  # ImportError, OSError (undefined symbols), RuntimeError, ...
        first_line = (str(error).splitlines() or [""])[0]
        return None, f"{type(error).__name__}: {first_line}"


TORCHTEXT_UNUSABLE_REASON: str | None = None
if os.environ.get(BACKEND_ENV, "").strip().lower() == "own":
    TORCHTEXT_UNUSABLE_REASON = f"{BACKEND_ENV}=own"
    _torchtext = None
else:
    _torchtext, TORCHTEXT_UNUSABLE_REASON = _load_torchtext()

if _torchtext is not None:
    get_tokenizer, build_vocab_from_iterator, _version = _torchtext
    BACKEND = f"torchtext {_version.split('+')[0]}"
else:
    get_tokenizer = own_get_tokenizer
    build_vocab_from_iterator = own_build_vocab_from_iterator
    BACKEND = OWN_BACKEND

__all__ = [
    "BACKEND",
    "TORCHTEXT_UNUSABLE_REASON",
    "Vocab",
    "VocabError",
    "basic_english_normalize",
    "build_vocab_from_iterator",
    "get_tokenizer",
    "own_build_vocab_from_iterator",
    "own_get_tokenizer",
    "own_vocab",
]
