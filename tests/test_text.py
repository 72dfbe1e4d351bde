"""Tests for the tokenizer, vocabulary and word-vector loading (spec §6)."""

import json
import warnings

import numpy as np
import pytest

from mmnas.data.text import Vocab, load_word_vectors, tokenize

DIM = 300


def test_tokenize_deletes_and_splits():
    assert tokenize("What's the man's (red) shirt?") == ["whats", "the", "mans", "red", "shirt"]
    assert tokenize('Is it "black-and-white"/grey!') == ["is", "it", "black", "and", "white", "grey"]
    assert tokenize("A.B,C*D#E:F;G") == ["abcdefg"]
    assert tokenize("  Two\tspaces\n  HERE ") == ["two", "spaces", "here"]
    assert tokenize("") == []
    # characters outside the list are kept
    assert tokenize("a&b 3+4 x_y") == ["a&b", "3+4", "x_y"]


def test_vocab_order_and_specials():
    vocab = Vocab.build([["what", "is", "this"], ["is", "it", "red"], ["what"]])
    assert vocab.words == ("PAD", "UNK", "CLS", "what", "is", "this", "it", "red")
    assert (Vocab.PAD, Vocab.UNK, Vocab.CLS) == (0, 1, 2)
    assert len(vocab) == 8
    assert vocab.lookup("it") == 6 and vocab.lookup("zebra") == Vocab.UNK
    assert "red" in vocab and "zebra" not in vocab
    assert vocab[3] == "what"


def test_encode_pads_truncates_and_maps_oov():
    vocab = Vocab.build([["a", "b", "c"]])
    ids = vocab.encode(["a", "zebra", "c"], max_len=5)
    assert ids.dtype == np.int64 and ids.shape == (5,)
    assert ids.tolist() == [3, Vocab.UNK, 5, 0, 0]
    assert vocab.encode(["a", "b", "c", "a"], max_len=2).tolist() == [3, 4]
    assert vocab.encode([], max_len=3).tolist() == [0, 0, 0]


def test_vocab_dict_round_trip_and_fingerprint():
    vocab = Vocab.build([["x", "y"], ["z"]])
    data = json.loads(json.dumps(vocab.to_dict()))
    again = Vocab.from_dict(data)
    assert again == vocab and again.fingerprint() == vocab.fingerprint()
    assert len(vocab.fingerprint()) >= 8
    # order matters for ids, so it matters for the fingerprint
    assert Vocab.build([["y", "x", "z"]]).fingerprint() != vocab.fingerprint()
    # stable across processes: a fixed value for a fixed word list
    assert Vocab.build([["x"]]).fingerprint() == Vocab.build([["x"]]).fingerprint()


def test_vocab_from_dict_rejects_bad_input():
    with pytest.raises(ValueError, match="PAD"):
        Vocab.from_dict({"words": ["a", "b"]})
    with pytest.raises(ValueError, match="fingerprint"):
        Vocab.from_dict({"words": ["PAD", "UNK", "CLS", "a"], "fingerprint": "0000"})
    with pytest.raises(ValueError, match="duplicates"):
        Vocab.from_dict({"words": ["PAD", "UNK", "CLS", "a", "a"]})


@pytest.fixture()
def vocab_and_vectors():
    vocab = Vocab.build([["what", "color", "is", "it"], ["zzunknown"]])
    rng = np.random.default_rng(1)
    known = ["PAD", "UNK", "CLS", "what", "color", "is", "it", "outside"]  # "outside" not in vocab
    vectors = {w: rng.standard_normal(DIM).astype(np.float32) for w in known}
    return vocab, vectors


def _write_glove(path, vectors):
    with open(path, "w", encoding="utf-8") as handle:
        for word, vec in vectors.items():
            handle.write(word + " " + " ".join(repr(float(v)) for v in vec) + "\n")


def _write_spacy(path, vectors):
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    for word, vec in vectors.items():
        nlp.vocab.set_vector(word, vec)
    nlp.to_disk(path)


def test_glove_and_spacy_give_same_vectors(tmp_path, vocab_and_vectors):
    vocab, vectors = vocab_and_vectors
    glove_file = tmp_path / "glove.txt"
    _write_glove(glove_file, vectors)
    spacy_dir = tmp_path / "spacy_model"
    _write_spacy(spacy_dir, vectors)

    from_glove = load_word_vectors(vocab, str(glove_file))
    from_spacy = load_word_vectors(vocab, str(spacy_dir))
    for matrix in (from_glove, from_spacy):
        assert matrix.shape == (len(vocab), DIM) and matrix.dtype == np.float32
        for index, word in enumerate(vocab.words):
            expected = vectors.get(word, np.zeros(DIM, np.float32))
            np.testing.assert_array_equal(matrix[index], expected, err_msg=word)
    np.testing.assert_array_equal(from_glove, from_spacy)
    assert not from_glove[vocab.lookup("zzunknown")].any()


def test_glove_header_and_spaced_words(tmp_path):
    vocab = Vocab.build([["a b", "c"]])
    path = tmp_path / "w2v.txt"
    vec = np.arange(DIM, dtype=np.float32)
    path.write_text(f"2 {DIM}\n" + "a b " + " ".join(map(str, vec)) + "\n"
                    + "c " + " ".join(map(str, -vec)) + "\n")
    matrix = load_word_vectors(vocab, str(path))
    np.testing.assert_array_equal(matrix[vocab.lookup("a b")], vec)
    np.testing.assert_array_equal(matrix[vocab.lookup("c")], -vec)


def test_wrong_dimension_is_an_error(tmp_path, vocab_and_vectors):
    vocab, _ = vocab_and_vectors
    path = tmp_path / "small.txt"
    path.write_text("what 0.1 0.2 0.3\n")
    with pytest.raises(ValueError, match="300"):
        load_word_vectors(vocab, str(path))
    spacy_dir = tmp_path / "small_spacy"
    _write_spacy(spacy_dir, {"what": np.ones(5, np.float32)})
    with pytest.raises(ValueError, match="5-d"):
        load_word_vectors(vocab, str(spacy_dir))


@pytest.mark.parametrize("source", [None, "none", "None"])
def test_no_source_warns_and_is_seeded(source, vocab_and_vectors):
    vocab, _ = vocab_and_vectors
    with pytest.warns(UserWarning, match="random"):
        first = load_word_vectors(vocab, source, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        second = load_word_vectors(vocab, source, seed=3)
        other = load_word_vectors(vocab, source, seed=4)
    assert first.shape == (len(vocab), DIM) and first.dtype == np.float32
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_unknown_source_is_a_clear_error(tmp_path, vocab_and_vectors):
    vocab, _ = vocab_and_vectors
    bad = str(tmp_path / "no_such_glove.txt")
    with pytest.raises(ValueError) as info:
        load_word_vectors(vocab, bad)
    message = str(info.value)
    assert bad in message
    assert "GloVe" in message and "spaCy" in message and "none" in message
    with pytest.raises(ValueError, match="en_no_such_vectors_pkg"):
        load_word_vectors(vocab, "en_no_such_vectors_pkg")
