"""Text side of the data: tokenizer, vocabulary and GloVe word vectors (spec §6)."""

from __future__ import annotations

from dataclasses import dataclass

import gzip
import hashlib
import json
import logging
import os
import warnings
from typing import Any, Iterable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["tokenize", "Vocab", "load_word_vectors", "NO_VECTOR_SOURCES"]

# Characters the release deletes before splitting (spec §6); '-' and '/' become spaces.
_DELETE = ".,'!?\"()*#:;"
_TRANSLATION = str.maketrans({**{c: None for c in _DELETE}, "-": " ", "/": " "})

# Source values that explicitly ask for random vectors instead of GloVe.
NO_VECTOR_SOURCES = ("", "none")


def tokenize(text: str) -> list[str]:
    """Lower-case, delete ``. , ' ! ? " ( ) * # : ;``, turn ``-``/``/`` into spaces, split."""
    return text.lower().translate(_TRANSLATION).split()


class Vocab:
    """Word ↔ id map: PAD=0, UNK=1, CLS=2, then words in first-seen order (spec §6)."""

    PAD = 0
    UNK = 1
    CLS = 2
    SPECIALS = ("PAD", "UNK", "CLS")

    def __init__(self, words: Iterable[str] = ()) -> None:
        self._itos: list[str] = []
        self._stoi: dict[str, int] = {}
        for word in self.SPECIALS:
            self.add(word)
        for word in words:
            self.add(word)

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]]) -> "Vocab":
        """Vocabulary of every token of ``token_lists``, in first-seen order after the specials."""
        vocab = cls()
        for tokens in token_lists:
            for token in tokens:
                vocab.add(token)
        return vocab

    def add(self, word: str) -> int:
        """Add ``word`` if new; return its id."""
        index = self._stoi.get(word)
        if index is None:
            index = len(self._itos)
            self._itos.append(word)
            self._stoi[word] = index
        return index

    def lookup(self, word: str) -> int:
        """Id of ``word``, UNK when it is not in the vocabulary."""
        return self._stoi.get(word, self.UNK)

    def encode(self, tokens: Sequence[str], max_len: int) -> np.ndarray:
        """Ids ``int64 [max_len]``: truncated, zero(PAD)-padded, out-of-vocabulary → UNK."""
        if max_len < 0:
            raise ValueError(f"max_len must be >= 0, got {max_len}")
        ids = np.zeros(max_len, dtype=np.int64)
        for position, token in enumerate(tokens[:max_len]):
            # The release used an OOV key absent from its dict (KeyError, spec §9); UNK instead.
            ids[position] = self._stoi.get(token, self.UNK)
        return ids

    @property
    def words(self) -> tuple[str, ...]:
        """Every string in id order, specials included."""
        return tuple(self._itos)

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, word: object) -> bool:
        return word in self._stoi

    def __getitem__(self, index: int) -> str:
        return self._itos[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._itos == other._itos

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, fingerprint={self.fingerprint()})"

    def fingerprint(self) -> str:
        """Short stable hash of the word list; differs when any word or its id differs."""
        # JSON keeps word boundaries unambiguous whatever characters stored tokens hold.
        payload = json.dumps(self._itos, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(payload).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, saved next to checkpoints."""
        return {"words": list(self._itos), "fingerprint": self.fingerprint()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Vocab":
        """Inverse of :meth:`to_dict`; checks the specials, duplicates and the fingerprint."""
        words = data.get("words") if isinstance(data, dict) else None
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ValueError("vocabulary dict must have a 'words' list of strings (as written by Vocab.to_dict)")
        if tuple(words[: len(cls.SPECIALS)]) != cls.SPECIALS:
            raise ValueError(
                f"vocabulary must start with {list(cls.SPECIALS)}, got {words[: len(cls.SPECIALS)]}"
            )
        if len(set(words)) != len(words):
            raise ValueError("vocabulary 'words' list contains duplicates; it was not written by Vocab.to_dict")
        vocab = cls(words[len(cls.SPECIALS):])
        expected = data.get("fingerprint")
        if expected is not None and expected != vocab.fingerprint():
            raise ValueError(
                f"vocabulary fingerprint mismatch: stored {expected}, computed {vocab.fingerprint()}; "
                "the file was edited or corrupted"
            )
        return vocab


def load_word_vectors(vocab: Vocab, source: str | os.PathLike | None, dim: int = 300,
                      seed: int = 0) -> np.ndarray:
    """Embedding matrix ``float32 [len(vocab), dim]`` for ``vocab`` (spec §6).

    ``source`` is a GloVe-style text file (``word v1 … v_dim`` per line, ``.gz`` allowed),
    a spaCy model directory or installed package name (e.g. ``en_vectors_web_lg``), or
    None / ``'none'`` for seeded random normal vectors (with a warning). Words without a
    vector keep zeros. Any other string raises ``ValueError``.
    """
    if source is None or str(source).strip().lower() in NO_VECTOR_SOURCES:
        return _random_vectors(vocab, dim, seed, reason="no word-vector source was given")
    path = os.fspath(source)
    if os.path.isfile(path):
        return _glove_text_vectors(vocab, path, dim)
    if os.path.isdir(path):
        return _spacy_vectors(vocab, path, dim)
    if _is_spacy_package(path):
        return _spacy_vectors(vocab, path, dim)
    raise ValueError(
        f"word-vector source {path!r} is neither an existing file or directory nor an installed "
        "spaCy package. Give one of: a GloVe text file ('word v1 ... v300' per line, e.g. "
        "glove.840B.300d.txt), a spaCy model directory or package name with 300-d vectors "
        "(e.g. en_vectors_web_lg, the release's choice), or 'none' for random vectors "
        "(results will not match the paper)."
    )


def _random_vectors(vocab: Vocab, dim: int, seed: int, reason: str) -> np.ndarray:
    message = (
        f"{reason}: using random normal word vectors (seed {seed}) for {len(vocab)} words. "
        "Results will not match the paper; pass a GloVe file or spaCy vectors package."
    )
    # Both: warnings reach interactive users and tests, logging reaches the run's log file.
    warnings.warn(message, stacklevel=3)
    logger.warning(message)
    rng = np.random.default_rng(seed)
    return rng.standard_normal((len(vocab), dim)).astype(np.float32)


def _open_text(path: str):
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, "r", encoding="utf-8", errors="replace")


def _glove_text_vectors(vocab: Vocab, path: str, dim: int) -> np.ndarray:
    matrix = np.zeros((len(vocab), dim), dtype=np.float32)
    found = np.zeros(len(vocab), dtype=bool)
    with _open_text(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            parts = line.rstrip("\n\r").rstrip(" ").split(" ")
            if line_number == 1 and len(parts) == 2:
                continue  # word2vec-style "count dim" header
            if len(parts) < dim + 1:
                if not line.strip():
                    continue
                raise ValueError(
                    f"{path}:{line_number}: expected a word and {dim} numbers, found "
                    f"{len(parts)} fields; is this a {dim}-d GloVe text file?"
                )
            # Some GloVe entries (840B) contain spaces: the vector is always the last `dim` fields.
            word = " ".join(parts[:-dim])
            index = vocab._stoi.get(word)
            if index is None or found[index]:
                continue  # parse numbers only for vocabulary words; the first entry wins
            try:
                matrix[index] = np.asarray(parts[-dim:], dtype=np.float32)
            except ValueError as error:
                raise ValueError(f"{path}:{line_number}: bad number in the vector of {word!r}: {error}") from None
            found[index] = True
    _log_coverage(found, path)
    return matrix


def _is_spacy_package(name: str) -> bool:
    try:
        import spacy.util  # imported lazily: spaCy is heavy and optional at import time
    except ImportError:
        return False
    return bool(spacy.util.is_package(name))


def _spacy_vectors(vocab: Vocab, source: str, dim: int) -> np.ndarray:
    try:
        import spacy
    except ImportError:
        raise ValueError(
            f"word-vector source {source!r} is a spaCy model, but spaCy is not installed; "
            "install spaCy or give a GloVe text file"
        ) from None
    nlp = spacy.load(source)
    width = nlp.vocab.vectors_length
    if width != dim:
        raise ValueError(
            f"spaCy model {source!r} has {width}-d word vectors, expected {dim}-d "
            "(a model without vectors, such as en_core_web_sm, reports 0)"
        )
    matrix = np.zeros((len(vocab), dim), dtype=np.float32)
    found = np.zeros(len(vocab), dtype=bool)
    for index, word in enumerate(vocab.words):
        # The release reads the vector of the word's own string, specials included (spec §6).
        if nlp.vocab.has_vector(word):
            matrix[index] = np.asarray(nlp.vocab.get_vector(word), dtype=np.float32)
            found[index] = True
    _log_coverage(found, source)
    return matrix


def _log_coverage(found: np.ndarray, source: str) -> None:
    logger.info("word vectors from %s: %d of %d words found, the rest are zeros",
                source, int(found.sum()), len(found))


AUTO_VECTORS = ("en_vectors_web_lg", "en_core_web_lg")


def resolve_word_vectors(vocab: Vocab, source: str, seed: int = 0) -> np.ndarray:
    """The `data.word_vectors` setting: 'auto' tries the release's spaCy package, then en_core_web_lg, then random
    vectors with a warning; anything else is a source for `load_word_vectors` (an error names it)."""
    from mmnas.errors import DataError
    if source != "auto":
        try:
            return load_word_vectors(vocab, source, seed=seed)
        except ValueError as e:
            raise DataError(f"data.word_vectors: {e}") from None
    for name in AUTO_VECTORS:
        try:
            return load_word_vectors(vocab, name, seed=seed)
        except (ValueError, OSError, ImportError):
            continue
    return load_word_vectors(vocab, None, seed=seed)


@dataclass
class TextMeta:
    """What a network trained on some data depends on: its token vocabulary (and the word vectors it started from)."""

    vocab: Vocab
    word_vectors: np.ndarray | None = None

    def fingerprint(self) -> dict:
        return {"vocab": self.vocab.fingerprint(), "vocab_size": len(self.vocab)}
