"""GPT-2's byte-level BPE tokenizer, from scratch in plain Python (no ``regex``, no ``tokenizers``).

Why bytes. A tokenizer maps text to integer ids from a fixed vocabulary. A vocabulary of words has
no id for a word it never saw; one of characters would need Unicode's ~150,000. GPT-2 works on the
UTF-8 *bytes* of the text: 256 base symbols spell any string, and "byte pair encoding" (BPE) adds
frequent runs of bytes as tokens of their own. Nothing is ever unknown: a word the merges never saw
just falls apart into smaller pieces, down to single bytes.

The unicode table. The merges are stored as text, so every byte gets a visible stand-in character
(:func:`bytes_to_unicode`): the printable bytes ``!``..``~``, ``¡``..``¬``, ``®``..``ÿ`` stand for
themselves, the other 68 (space, newline, control bytes, ...) become ``chr(256)``, ``chr(257)``, ...
in byte order. So a space is ``Ġ`` (U+0120), a newline ``Ċ``, and ``é`` (bytes C3 A9) is ``Ã©``.

Merges by rank. ``merges.txt`` lists pairs in the order they were learned; a lower line is a lower
rank. To encode a piece, start from its byte symbols and repeatedly join the adjacent pair with the
lowest rank (every occurrence, left to right) until no adjacent pair is in the list.
The resulting symbols are looked up in ``vocab.json``.

The pre-tokenizer. Merges never cross the boundaries of the pieces made first by GPT-2's pattern
``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``: contractions,
runs of letters / digits / other symbols (each with at most one leading space), and whitespace.
``\\s+(?!\\S)`` keeps the last space of a run for the next word, so ``"a   b"`` gives
``"a" "  " " b"``. Python's ``re`` has no ``\\p{L}``, so :func:`pre_tokenize` is a small scanner
using ``unicodedata.category`` (``L*`` letter, ``N*`` number) and Unicode's White_Space for ``\\s``.
(Python's Unicode tables can be older than those of Hugging Face's ``tokenizers``: Python 3.11 has
Unicode 14, where some ~9,400 code points are still unassigned that later versions made letters or
digits; such characters count as "other" here. Every assigned character is classed the same.)
Special tokens (every vocab entry that looks like ``<|...|>``, GPT-2 has only ``<|endoftext|>``)
are cut out of the text first and encoded as one id, as Hugging Face's tokenizer does.

Files (Hugging Face's ``vocab.json`` and ``merges.txt``, OpenAI's ``encoder.json`` and ``vocab.bpe``):
``vocab.json`` is one JSON object ``{token: id}`` with ids 0..n-1 (GPT-2: 256 bytes, then one token
per merge, then ``<|endoftext|>`` = 50256). ``merges.txt`` starts with ``#version: 0.2``, then one
merge per line, the two tokens separated by one space: ``Ġ t`` (rank 0), ``Ġ a``, ``h e``, ...
"""
from __future__ import annotations

import functools
import json
import operator
import re
import unicodedata
from pathlib import Path

from ..backend import to_numpy

__all__ = ["GPT2Tokenizer", "bytes_to_unicode", "pre_tokenize"]

CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")       # in the pattern's order
# Unicode's White_Space property: what \s means to the `regex` module and to Hugging Face tokenizers.
WHITESPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                       "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """byte -> its stand-in character; printable bytes first (GPT-2's vocab gives them ids 0..187)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}                                  # 188 printable bytes
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + len(table) - len(keep))               # the other 68, in byte order
    return table


def _kind(c: str) -> str:
    """'L' letter, 'N' number, 'S' whitespace, 'O' anything else -- the classes of the pattern."""
    if c in WHITESPACE:
        return "S"
    cat = unicodedata.category(c)[0]
    return cat if cat in "LN" else "O"


def _run(text: str, i: int, kind: str) -> int:
    """The end of the run of ``kind`` characters that starts at ``i``."""
    while i < len(text) and _kind(text[i]) == kind:
        i += 1
    return i


def pre_tokenize(text: str) -> list[str]:
    """Split ``text`` as GPT-2's pattern does; ``"".join(pre_tokenize(t)) == t``."""
    pieces, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        contraction = next((s for s in CONTRACTIONS if text.startswith(s, i)), None)
        nxt = _kind(text[i + 1]) if i + 1 < n else None
        if contraction:                                                # 's 't 're 've 'm 'll 'd
            j = i + len(contraction)
        elif c == " " and nxt in ("L", "N", "O"):                      # ' ?X+': a space joins the run
            j = _run(text, i + 1, nxt)
        elif _kind(c) != "S":                                          # a run of L, N or O
            j = _run(text, i, _kind(c))
        else:                                                          # whitespace
            j = _run(text, i, "S")
            if j < n and j - i > 1:                                    # \s+(?!\S): leave the last one
                j -= 1
        pieces.append(text[i:j])
        i = j
    return pieces


class GPT2Tokenizer:
    """Byte-level BPE: ``encode(text) -> list[int]`` and ``decode(ids) -> str``, GPT-2's algorithm.

    ``vocab`` maps token strings (in the byte stand-in characters) to ids 0..n-1; ``merges`` lists
    ``(left, right)`` pairs, best first. Use :meth:`from_folder` to read ``vocab.json``/``merges.txt``.
    """

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]):
        self.encoder = _check_vocab(vocab, "vocab")
        self.decoder = {i: t for t, i in self.encoder.items()}
        self.ranks = {}
        for k, merge in enumerate(merges):
            if not (isinstance(merge, (tuple, list)) and len(merge) == 2
                    and all(isinstance(t, str) for t in merge)):
                raise ValueError(f"merges[{k}] must be a pair of token strings, got {merge!r}")
            left, right = merge
            for part in (left, right, left + right):
                if part not in self.encoder:
                    raise ValueError(f"merges[{k}] = {merge!r}: {part!r} is not in the vocab")
            self.ranks.setdefault((left, right), k)                   # a repeated merge keeps its first rank
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {s: b for b, s in self.byte_encoder.items()}
        self.specials = {t: i for t, i in self.encoder.items() if re.fullmatch(r"<\|[^|]+\|>", t)}
        longest_first = sorted(self.specials, key=len, reverse=True)
        self._special_re = (re.compile("(" + "|".join(map(re.escape, longest_first)) + ")")
                            if self.specials else None)               # split() keeps the (group)
        self._bpe = functools.lru_cache(maxsize=65536)(self._bpe_uncached)

    @classmethod
    def from_folder(cls, folder) -> GPT2Tokenizer:
        """Read ``vocab.json`` and ``merges.txt`` from ``folder`` (a Hugging Face GPT-2 folder)."""
        folder = Path(folder)
        vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
        for path in (vocab_path, merges_path):
            if not path.is_file():
                raise FileNotFoundError(f"GPT2Tokenizer.from_folder: {path} not found (a GPT-2 tokenizer "
                                        "folder has vocab.json and merges.txt)")
        try:
            vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{vocab_path} is not valid JSON: {err}") from None
        return cls(_check_vocab(vocab, str(vocab_path)), _read_merges(merges_path))

    def __len__(self) -> int:
        return len(self.encoder)

    @property
    def eot_id(self) -> int | None:
        """The id of ``<|endoftext|>``, or None if the vocab has none."""
        return self.encoder.get("<|endoftext|>")

    def token_to_id(self, token: str) -> int:
        """The id of a token string (in the byte stand-in characters: ``"Ġgrape"``)."""
        if token not in self.encoder:
            raise KeyError(f"token {token!r} is not in the vocab")
        return self.encoder[token]

    def id_to_token(self, i: int) -> str:
        """The token string of id ``i`` (``decode([i])`` gives its text instead)."""
        return self.decoder[self._check_id(i, "i")]

    def _bpe_uncached(self, word: str) -> tuple[str, ...]:
        """Join the best-ranked adjacent pair, everywhere, until no pair is a merge."""
        parts = list(word)
        while len(parts) > 1:
            pairs = zip(parts[:-1], parts[1:], strict=True)               # adjacent pairs
            pair = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if pair not in self.ranks:
                break
            merged, k = [], 0
            while k < len(parts):
                if k + 1 < len(parts) and (parts[k], parts[k + 1]) == pair:
                    merged.append(parts[k] + parts[k + 1])
                    k += 2
                else:
                    merged.append(parts[k])
                    k += 1
            parts = merged
        return tuple(parts)

    def encode(self, text: str) -> list[int]:
        """Text -> token ids: special tokens, then pre-tokenizer pieces -> bytes -> BPE -> ids."""
        if not isinstance(text, str):
            raise TypeError(f"GPT2Tokenizer.encode: text must be a str, got {type(text).__name__}")
        chunks = self._special_re.split(text) if self._special_re else [text]
        ids = []
        for k, chunk in enumerate(chunks):                             # odd k: a special token
            if k % 2:
                ids.append(self.specials[chunk])
                continue
            for piece in pre_tokenize(chunk):
                symbols = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
                for token in self._bpe(symbols):
                    if token not in self.encoder:
                        raise ValueError(f"GPT2Tokenizer.encode: token {token!r} (from {piece!r}) is not in "
                                         "the vocab; a byte-level vocab needs all 256 byte symbols")
                    ids.append(self.encoder[token])
        return ids

    def decode(self, ids) -> str:
        """Token ids (a list or a 1-D integer array) -> text; invalid UTF-8 becomes U+FFFD, as in GPT-2."""
        if hasattr(ids, "ndim"):
            if ids.ndim != 1:
                raise ValueError(f"GPT2Tokenizer.decode: ids must be 1-D, got shape {tuple(ids.shape)}")
            ids = to_numpy(ids).tolist()                                # any backend's array -> host
        out = bytearray()
        for k, i in enumerate(ids):
            token = self.decoder[self._check_id(i, f"ids[{k}]")]
            if token in self.specials:
                out += token.encode("utf-8")
            else:
                out += bytes(self.byte_decoder[s] for s in token)
        return out.decode("utf-8", errors="replace")

    def _check_id(self, i, name: str) -> int:
        try:
            j = operator.index(i)                                      # int, NumPy integers
        except TypeError:
            j = None
        if j is None or isinstance(i, bool):
            raise TypeError(f"GPT2Tokenizer: {name} must be an integer token id, got {i!r}")
        if not 0 <= j < len(self.encoder):
            last = len(self.encoder) - 1
            raise ValueError(f"GPT2Tokenizer: {name} = {j} is out of range: ids are 0..{last}")
        return j


def _check_vocab(vocab, name: str) -> dict[str, int]:
    """A dict str -> int whose ids are exactly 0..n-1, each once."""
    if not isinstance(vocab, dict) or not vocab:
        raise ValueError(f"{name} must be a non-empty JSON object {{token: id}}, got {type(vocab).__name__}")
    for token, i in vocab.items():
        if not isinstance(token, str) or not isinstance(i, int) or isinstance(i, bool):
            raise ValueError(f"{name} must map token strings to integer ids, got {token!r}: {i!r}")
    seen = {}
    for token, i in vocab.items():
        if i in seen:
            raise ValueError(f"{name}: id {i} is given to both {seen[i]!r} and {token!r}")
        seen[i] = token
    missing = sorted(set(range(len(vocab))) - set(seen))
    if missing:
        raise ValueError(f"{name}: ids must be 0..{len(vocab) - 1}, but {missing[:5]} are missing "
                         f"(and {sorted(set(seen) - set(range(len(vocab))))[:5]} are outside)")
    return dict(vocab)


def _read_merges(path: Path) -> list[tuple[str, str]]:
    """Lines ``left right`` (one space), after an optional ``#version`` line; blank lines are skipped."""
    merges = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        line = line.rstrip("\r")
        if not line or (lineno == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"{path}: line {lineno}: a merge must be two tokens separated by one space, "
                             f"got {line!r}")
        merges.append((parts[0], parts[1]))
    return merges
