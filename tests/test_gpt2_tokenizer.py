"""GPT-2's byte-level BPE tokenizer against Hugging Face's, on committed reference ids.

``tests/data/gpt2_tiny`` holds a 512-token byte-level BPE and the ids that
``transformers.GPT2TokenizerFast`` gives for tricky texts (tests/data/gpt2_tiny/make_tiny_gpt2.py
made them; nothing here imports Hugging Face).
"""
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_np.gpt2.tokenizer import GPT2Tokenizer, bytes_to_unicode, pre_tokenize

pytestmark = pytest.mark.host_only

DATA = Path(__file__).parent / "data" / "gpt2_tiny"
REFERENCE = json.loads((DATA / "tokenizer_reference.json").read_text(encoding="utf-8"))
EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def tok():
    return GPT2Tokenizer.from_folder(DATA)


def test_committed_files_exist_and_agree(tok):
    names = ("vocab.json", "merges.txt", "tokenizer_reference.json", "config.json", "model.safetensors",
             "model.float16.safetensors", "model.bfloat16.safetensors", "reference.npz", "peft_reference.npz",
             "peft_adapter/adapter_config.json", "peft_adapter/adapter_model.safetensors", "VERSIONS.json")
    for name in names:
        assert (DATA / name).is_file(), name
    config = json.loads((DATA / "config.json").read_text())
    assert len(tok) == config["vocab_size"] == 512
    assert tok.eot_id == config["eos_token_id"] == len(tok) - 1          # last id, as in GPT-2
    assert (DATA / "merges.txt").read_text(encoding="utf-8").startswith("#version: 0.2\n")


def test_reference_covers_the_tricky_cases():
    texts = [r["text"] for r in REFERENCE]
    for needle in ("'s", "'S", "  ", "\t", "\n\n", "\r\n", "x12", "é", "水", "🍇", "\u0301", EOT, "\u3000"):
        assert any(needle in t for t in texts), needle
    assert "" in texts and any(t.startswith(" ") for t in texts) and any(t.endswith("  ") for t in texts)


@pytest.mark.parametrize("row", REFERENCE, ids=[f"text{k}" for k in range(len(REFERENCE))])
def test_encode_matches_hugging_face(tok, row):
    assert tok.encode(row["text"]) == row["ids"]
    assert tok.decode(row["ids"]) == row["text"]


def test_special_token(tok):
    eot = tok.eot_id
    assert tok.token_to_id(EOT) == eot and tok.id_to_token(eot) == EOT
    ids = tok.encode(f"grapes{EOT}{EOT} plums")
    assert ids.count(eot) == 2 and ids == tok.encode("grapes") + [eot, eot] + tok.encode(" plums")
    assert tok.decode([eot]) == EOT
    assert eot not in tok.encode("<|endoftext|") + tok.encode("<|endoftext")       # only the whole token


def test_decode_accepts_arrays_and_replaces_invalid_utf8(tok):
    ids = tok.encode("café ripe 🍇")
    assert tok.decode(np.array(ids)) == tok.decode(tuple(ids)) == "café ripe 🍇"
    half = tok.token_to_id(bytes_to_unicode()[0xC3])                  # the first byte of 'é' alone
    assert tok.decode([half]) == "\ufffd"


def test_pre_tokenize_follows_gpt2_pattern():
    assert pre_tokenize("a   b") == ["a", "  ", " b"]                 # \s+(?!\S) leaves one space
    assert pre_tokenize("it's") == ["it", "'s"]
    assert pre_tokenize("IT'S") == ["IT", "'", "S"]                    # contractions are lower case
    assert pre_tokenize("x12 @30c;") == ["x", "12", " @", "30", "c", ";"]
    assert pre_tokenize("a\n b  ") == ["a", "\n", " b", "  "]
    assert pre_tokenize("end\t\tword") == ["end", "\t", "\t", "word"]   # only a space joins a word
    assert pre_tokenize("") == []


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40))
def test_decode_inverts_encode(tok, text):
    assert "".join(pre_tokenize(text)) == text
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["grape", " grapes", "'s", " ", "  ", "\n", "\r\n", "12", " x3", "é", EOT,
                                 "!?", "\t", "水果", "\u0301"]), max_size=12))
def test_decode_inverts_encode_on_building_blocks(tok, parts):
    text = "".join(parts)
    assert tok.decode(tok.encode(text)) == text


# A vocabulary small enough to follow by hand ("Ġ" stands for the space byte).
HAND_VOCAB = {"l": 0, "o": 1, "w": 2, "Ġ": 3, "e": 4, "r": 5, "ow": 6, "low": 7, "Ġlow": 8, "er": 9}
HAND_MERGES = [("o", "w"), ("l", "ow"), ("Ġ", "low"), ("e", "r")]


def test_hand_made_vocab():
    tok = GPT2Tokenizer(HAND_VOCAB, HAND_MERGES)
    # "low lower" -> pieces "low", " lower" -> bytes "low", "Ġlower"
    # "low":    l o w -> (o,w) rank 0: l ow -> (l,ow) rank 1: low                     -> [7]
    # "Ġlower": Ġ l o w e r -> Ġ l ow e r -> Ġ low e r -> (Ġ,low) rank 2: Ġlow e r -> (e,r): Ġlow er -> [8, 9]
    assert tok.encode("low lower") == [7, 8, 9]
    assert tok.encode("lowow") == [7, 6]
    assert tok.decode([8, 9, 3, 0]) == " lower l"
    assert len(tok) == 10 and tok.eot_id is None


def test_merges_apply_by_rank_not_position():
    vocab = {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "aa": 5}
    assert GPT2Tokenizer(vocab, [("b", "c"), ("a", "b")]).encode("abc") == [0, 4]
    assert GPT2Tokenizer(vocab, [("a", "b"), ("b", "c")]).encode("abc") == [3, 2]
    assert GPT2Tokenizer(vocab, [("a", "a")]).encode("aaa") == [5, 0]        # left to right


def _folder(tmp_path, vocab, merges="#version: 0.2\n"):
    (tmp_path / "vocab.json").write_text(vocab if isinstance(vocab, str) else json.dumps(vocab))
    (tmp_path / "merges.txt").write_text(merges)
    return tmp_path


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        GPT2Tokenizer.from_folder(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps(HAND_VOCAB))
    with pytest.raises(FileNotFoundError, match="merges.txt"):
        GPT2Tokenizer.from_folder(tmp_path)


@pytest.mark.parametrize("merges, match", [
    ("#version: 0.2\no w\nl ow e\n", r"merges.txt: line 3: .*'l ow e'"),
    ("o w\nlow\n", r"line 2: .*'low'"),
    ("#version: 0.2\no  w\n", r"line 2"),
    ("#version: 0.2\no w\nx y\n", r"\('x', 'y'\).*'x' is not in the vocab"),
    ("#version: 0.2\nl w\n", r"'lw' is not in the vocab"),
])
def test_bad_merges_are_named(tmp_path, merges, match):
    with pytest.raises(ValueError, match=match):
        GPT2Tokenizer.from_folder(_folder(tmp_path, HAND_VOCAB, merges))


@pytest.mark.parametrize("vocab, match", [
    ("[1, 2]", r"vocab.json must be a non-empty JSON object"),
    ("{not json", r"vocab.json is not valid JSON"),
    ({"a": "0"}, r"vocab.json must map token strings to integer ids, got 'a': '0'"),
    ({"a": 0, "b": 0}, r"id 0 is given to both 'a' and 'b'"),
    ({"a": 0, "b": 2}, r"ids must be 0..1, but \[1\] are missing"),
])
def test_bad_vocab_is_named(tmp_path, vocab, match):
    with pytest.raises(ValueError, match=match):
        GPT2Tokenizer.from_folder(_folder(tmp_path, vocab))


def test_bad_arguments_are_named():
    tok = GPT2Tokenizer(HAND_VOCAB, HAND_MERGES)
    with pytest.raises(TypeError, match="text must be a str"):
        tok.encode(b"low")
    with pytest.raises(ValueError, match=r"ids\[1\] = 10 is out of range: ids are 0..9"):
        tok.decode([0, 10])
    with pytest.raises(ValueError, match=r"ids\[0\] = -1 is out of range"):
        tok.decode([-1])
    with pytest.raises(TypeError, match=r"ids\[0\] must be an integer token id"):
        tok.decode([1.0])
    with pytest.raises(TypeError, match=r"ids\[0\] must be an integer token id, got True"):
        tok.decode([True])
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(np.zeros((2, 2), dtype=int))
    with pytest.raises(ValueError, match=r"token 'x' \(from 'x'\) is not in the vocab"):
        tok.encode("x")
    with pytest.raises(ValueError, match=r"merges\[0\] must be a pair"):
        GPT2Tokenizer(HAND_VOCAB, [("o", "w", "x")])
    with pytest.raises(KeyError, match="'zz' is not in the vocab"):
        tok.token_to_id("zz")
