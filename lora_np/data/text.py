"""Styled text about fruit shops: a seeded little grammar for a character-level language model.

Four styles share one vocabulary of fruit names (those of :data:`lora_np.data.fruit.FRUITS`) and
each has marks a reader — or :func:`style_markers` — can count:

* ``"plain"``      ``the grocer sells ripe grapes and two lemons.``   lower case, '.' and nothing else;
* ``"inventory"``  ``GRAPES x12 @2c; LEMONS x3 @1c;``                 UPPER CASE, digits, 'x', '@', ';';
* ``"verse"``      ``oh round red cherry, so sweet, so bright,``     "oh", commas, rhyming couplets, '!';
* ``"dialogue"``   ``customer: do you have ripe plums?``             speakers with ':', questions '?'.

A base model is pretrained on one style (or a mix) and a LoRA adapter per style teaches it
another: the markers show whether the adapter changed what the model writes.

Every line is a template from :data:`TEMPLATES` whose ``{fields}`` are filled from :data:`WORDS`.
The characters of all templates and words make :data:`ALPHABET`, so :class:`CharVocab` can encode
every text the grammar can produce, and nothing else.
"""
from __future__ import annotations

import re
import string

import numpy as _host_np  # text is generated and encoded on the host, then moved to the device

from .. import backend, validate
from .fruit import FRUITS

STYLES = ("plain", "inventory", "verse", "dialogue")


def _plural(word: str) -> str:
    return word[:-1] + "ies" if word.endswith("y") and word[-2] not in "aeiou" else word + "s"


WORDS = {
    "fruit": FRUITS,
    "fruits": tuple(_plural(f) for f in FRUITS),
    "FRUITS": tuple(_plural(f).upper() for f in FRUITS),
    "seller": ("grocer", "farmer", "vendor", "shopkeeper"),
    "buyer": ("cook", "baker", "child", "neighbour", "teacher"),
    "shop": ("market", "stall", "shop", "corner shop"),
    "place": ("counter", "shelf", "cart", "table"),
    "adj": ("ripe", "fresh", "sweet", "juicy", "small", "big", "cheap", "soft"),
    "num": ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"),
    "qty": tuple(str(i) for i in range(1, 49)),
    "price": tuple(str(i) for i in range(1, 10)),
    "fond": ("round", "little", "plump", "lovely", "shiny"),
    "dear": ("soft", "ripe", "fair", "fresh", "dear"),
    "rhyme": ("bright", "sweet", "round", "fine"),
}
COLOURS = {"apple": ("red", "green"), "banana": ("yellow",), "blueberry": ("blue",), "cherry": ("red",),
           "grape": ("purple", "green"), "lemon": ("yellow",), "orange": ("golden",), "plum": ("purple",),
           "raisin": ("brown",), "strawberry": ("red",)}
RHYME_LINES = {
    "bright": ("you glow like lanterns in the night!", "you fill my basket with delight!"),
    "sweet": ("the finest fruit along the street!", "a tiny, juicy summer treat!"),
    "round": ("the fairest fruit that can be found!", "you roll and tumble to the ground!"),
    "fine": ("you shine like sunlight on the vine!", "oh stay with me and be all mine!"),
}
_ITEM = "{FRUITS} x{qty} @{price}c;"
# A style is a stanza: one template is drawn from each tuple in turn, one line each.
TEMPLATES = {
    "plain": (("the {seller} sells {adj} {fruits} and {num} {fruits}.",
               "a {buyer} buys {num} {fruits} at the {shop}.",
               "today the {shop} has {adj} {fruits}.",
               "the {fruits} on the {place} are {adj}.",
               "my {buyer} likes {adj} {fruits} more than {fruits}."),),
    "inventory": (tuple(" ".join([_ITEM] * k) for k in (2, 3, 4)),),      # two to four items a line
    "verse": (("oh {fond} {colour} {fruit}, so {dear}, so {rhyme},",), ("{rhyme_line}",)),
    "dialogue": (("customer: do you have {adj} {fruits}?", "customer: how much are the {fruits}?",
                  "customer: are the {fruits} {adj} today?"),
                 ("{seller}: yes, {num} {fruits} for {num} pence.", "{seller}: no, only {fruits} today.",
                  "{seller}: the {fruits} are very {adj}.")),
}


def _literals(template: str):
    return "".join(text for text, _, _, _ in string.Formatter().parse(template))


def _alphabet() -> str:
    """Every character the grammar can write, in a fixed order: newline, space, punctuation, digits,
    letters."""
    pieces = ["\n"] + [_literals(t) for stanza in TEMPLATES.values() for slot in stanza for t in slot]
    pieces += [w for words in WORDS.values() for w in words]
    pieces += [w for ws in COLOURS.values() for w in ws] + [w for ws in RHYME_LINES.values() for w in ws]
    return "".join(sorted(set("".join(pieces))))


ALPHABET = _alphabet()


_SHARED = {"colour": "fruit", "rhyme_line": "rhyme"}     # a field that follows another one


def _fill(template: str, rng, picked: dict) -> str:
    """Fill ``{fields}`` left to right. ``fruit`` and ``rhyme`` are drawn once per stanza (``picked``),
    so a ``colour`` suits its fruit and a ``rhyme_line`` ends on the stanza's rhyme."""
    def draw(choices):
        return choices[int(rng.integers(len(choices)))]

    out = []
    for text, field, _, _ in string.Formatter().parse(template):
        out.append(text)
        if field is None:
            continue
        if field in _SHARED.values() or field in _SHARED:
            key = _SHARED.get(field, field)
            if key not in picked:
                picked[key] = draw(WORDS[key])
            out.append(picked[key] if key == field else
                       draw(COLOURS[picked[key]] if field == "colour" else RHYME_LINES[picked[key]]))
        else:
            out.append(draw(WORDS[field]))
    return "".join(out)


def generate_text(style: str, n_lines: int, seed: int = 0) -> str:
    """``n_lines`` lines (each ending in a newline) of the given style, reproducible from ``seed``."""
    style = validate.choice(style, "style", STYLES)
    n_lines = validate.positive_int(n_lines, "n_lines")
    rng, lines = _host_np.random.default_rng(seed), []
    while len(lines) < n_lines:
        picked = {}                                       # shared by the lines of one stanza
        for slot in TEMPLATES[style]:
            lines.append(_fill(slot[int(rng.integers(len(slot)))], rng, picked) + "\n")
    return "".join(lines[:n_lines])


class CharVocab:
    """Characters <-> integer ids. The default alphabet is :data:`ALPHABET` (all styles' characters)."""

    def __init__(self, chars: str | None = None):
        chars = ALPHABET if chars is None else chars
        if not isinstance(chars, str) or not chars:
            raise ValueError(f"chars must be a non-empty string, got {chars!r}")
        if len(set(chars)) != len(chars):
            dup = sorted({c for c in chars if chars.count(c) > 1})
            raise ValueError(f"chars must not repeat a character; repeated: {dup!r}")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @property
    def size(self) -> int:
        return len(self.chars)

    def __len__(self) -> int:
        return self.size

    def encode(self, text: str):
        """A string -> a host int64 array of ids ``(len(text),)``."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a string, got {type(text).__name__}")
        try:
            return _host_np.fromiter((self.stoi[c] for c in text), dtype=_host_np.int64, count=len(text))
        except KeyError as err:
            ch = err.args[0]
            raise ValueError(f"text contains the character {ch!r} at position {text.index(ch)}, which is "
                             f"not in the vocabulary ({self.size} characters: {self.chars!r})") from None

    def decode(self, ids) -> str:
        """Ids (a list, or a 1-D array on any backend) -> the string."""
        ids = backend.to_numpy(ids)
        if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
            raise ValueError(f"ids must be a 1-D array of integers, got shape {ids.shape} "
                             f"and dtype {ids.dtype}")
        bad = ids[(ids < 0) | (ids >= self.size)]
        if bad.size:
            raise ValueError(f"ids must lie in [0, {self.size}), got {int(bad[0])}")
        return "".join(self.chars[i] for i in ids.tolist())

    def __repr__(self) -> str:
        return f"CharVocab(size={self.size})"


def make_text_dataset(style: str, n_lines: int = 400, context: int = 32, seed: int = 0,
                      vocab: CharVocab | None = None, stride: int | None = None):
    """Next-character pairs ``X, Y: (N, context)`` int64 on the current backend, ``Y[:, t] = X[:, t + 1]``
    in the text (Y is X shifted by one).

    Windows start every ``stride`` characters (default ``context``: each character is a target once).
    """
    context = validate.positive_int(context, "context")
    stride = context if stride is None else validate.positive_int(stride, "stride")
    vocab = CharVocab() if vocab is None else vocab
    ids = vocab.encode(generate_text(style, n_lines, seed))            # (L,)
    if len(ids) < context + 1:
        raise ValueError(f"context={context} needs at least {context + 1} characters, but n_lines={n_lines} "
                         f"gave only {len(ids)}: use more lines or a shorter context")
    starts = _host_np.arange(0, len(ids) - context, stride)             # (N,)
    idx = starts[:, None] + _host_np.arange(context)[None, :]           # (N, context)
    return backend.asarray(ids[idx]), backend.asarray(ids[idx + 1])


def style_markers(text: str) -> dict:
    """Simple statistics that tell the styles apart (from the text alone).

    ``upper_frac``: upper-case share of the letters; ``semicolons``, ``ats``, ``digits``, ``commas``:
    per 100 characters; ``oh``, ``questions``, ``colons``, ``exclamations``: per line.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    n, lines = max(len(text), 1), max(len([ln for ln in text.split("\n") if ln.strip()]), 1)
    letters = [c for c in text if c.isalpha()]
    return {
        "upper_frac": sum(c.isupper() for c in letters) / max(len(letters), 1),
        "semicolons": 100 * text.count(";") / n,
        "ats": 100 * text.count("@") / n,
        "digits": 100 * sum(c.isdigit() for c in text) / n,
        "commas": 100 * text.count(",") / n,
        "oh": len(re.findall(r"\boh\b", text, flags=re.IGNORECASE)) / lines,
        "questions": text.count("?") / lines,
        "colons": text.count(":") / lines,
        "exclamations": text.count("!") / lines,
    }


def guess_style(text: str) -> str:
    """The style whose marks the text carries most (a rough reading, for generated samples)."""
    m = style_markers(text)
    scores = {
        "inventory": (m["semicolons"] + m["ats"]) / 4 + m["upper_frac"],   # ~1 + ~1 for inventory
        "verse": m["oh"] + m["exclamations"],                              # ~0.5 + ~0.5
        "dialogue": m["colons"],                                           # 1
        "plain": 0.3,                                                      # wins when nothing else does
    }
    return max(scores, key=scores.get)


_FRUIT_WORD = re.compile(r"\b(" + "|".join(sorted(WORDS["fruit"] + WORDS["fruits"], key=len, reverse=True))
                         + r")\b", flags=re.IGNORECASE)


def fruit_mentions(text: str) -> dict:
    """What a text is about, read from the fruit names it spells out (any case, singular or plural).

    ``per_100``: fruit names per 100 characters; ``counts``: ``{fruit: times named}`` for every fruit of
    :data:`WORDS` (0 when never named). Every style of the grammar names fruit: a sample that names
    none is no longer writing about fruit, whatever its marks.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    counts = dict.fromkeys(WORDS["fruit"], 0)
    plural = dict(zip(WORDS["fruits"], WORDS["fruit"], strict=True))
    for word in _FRUIT_WORD.findall(text):
        word = word.lower()
        counts[plural.get(word, word)] += 1
    return {"per_100": 100 * sum(counts.values()) / max(len(text), 1), "counts": counts}
