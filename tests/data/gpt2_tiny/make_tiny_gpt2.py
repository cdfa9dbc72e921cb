"""Make the tiny GPT-2 test data in this folder with Hugging Face ``tokenizers``, ``transformers``, ``peft``.

The files are the *reference* that ``lora_np.gpt2`` is checked against; they are committed, so the
tests never need torch or Hugging Face. The library and the tests must never import those packages.
Run this script only to regenerate the files, in a throwaway environment outside the repository::

    python3 -m venv /tmp/hf
    /tmp/hf/bin/pip install torch==2.13.0 transformers tokenizers peft safetensors numpy
    /tmp/hf/bin/python tests/data/gpt2_tiny/make_tiny_gpt2.py

Everything is seeded, and written next to this script. ``VERSIONS.json`` records the versions used
(the data were made with torch 2.13.0+cpu, transformers 5.24.0, tokenizers 0.23.3, peft 0.21.2).

What it writes
--------------
* ``vocab.json``, ``merges.txt``  a byte-level BPE (GPT-2's algorithm and file formats) trained on
  fruit-shop text (:func:`lora_np.data.text.generate_text`, every style) and a little English:
  ids 0..255 are the 256 byte symbols in GPT-2's order, then one token per merge in rank order,
  then ``<|endoftext|>`` as the last id, exactly GPT-2's layout (256 + 50000 + 1 there).
* ``tokenizer_reference.json``   ``[{"text": ..., "ids": [...]}, ...]``: tricky texts and their ids
  from ``transformers.GPT2TokenizerFast`` loaded from the two files (checked against OpenAI's
  original ``encoder.py`` algorithm too), each decoding back to its text.
* ``config.json``, ``model.safetensors``  a random 2-layer GPT-2 (``save_pretrained``, float32) whose
  LayerNorm parameters and biases are perturbed away from 1/0 so that loading them is tested.
* ``model.float16.safetensors``, ``model.bfloat16.safetensors``  the same weights cast.
* ``reference.npz``  ``ids`` (3, 24) int64; ``logits_f64`` (3, 24, V) (float32 results are compared
  with it too);
  ``logits_from_f16``, ``logits_from_bf16`` (float32 maths on rounded weights); ``loss_f64``
  (mean next-token cross-entropy, ``labels=ids``).
* ``peft_adapter/``  a PEFT LoRA adapter (r=4, alpha=8) on c_attn, c_proj, c_fc and lm_head with
  random ``lora_B``; ``peft_reference.npz``: ``logits_f64``, ``merged_logits_f64``.
* ``peft_adapter_rslora/``  a second adapter: c_attn only, rsLoRA, ``bias="lora_only"`` (the c_attn
  biases are perturbed and saved in the adapter); its logits are ``rslora_logits_f64`` in
  ``peft_reference.npz``.
"""
from __future__ import annotations

import copy
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import peft
import regex
import safetensors
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))
from lora_np.data.text import STYLES, generate_text  # noqa: E402

EOT = "<|endoftext|>"
VOCAB_SIZE = 512          # 256 bytes + 255 merges + <|endoftext|>
B, T = 3, 24

# General English with what the pre-tokenizer treats specially (contractions, runs of spaces,
# indentation, blank lines, CRLF, tabs, digits, punctuation runs), often enough to earn merges
# such as "'s", "ĠĠ", "ĊĊ", "čĊ", "12", "..." -- merges that a wrong pre-tokenizer would misuse.
ENGLISH = """\
The quick brown fox jumps over the lazy dog. It's a sunny day, isn't it? That's what she's said.
We've been waiting for hours; they'll arrive soon, and I'd say we're ready. I'm sure you'd agree.
Don't worry, it's fine: the grocer's cart isn't late, they're just slow and we'll wait.
In 1984, the price of apples was 12 cents a pound -- or so my grandmother said...
"Hello!" she shouted across the street. "Don't forget the bread, the milk and the eggs!!"
Numbers like 3.14159, 2,718 and 1000000 appear in many texts; so do dates such as 2024-05-12.
    def price(fruit):
        return 12 * fruit.count
\tcolumn\tseparated\tvalues\r\nsecond\trow\r\n

Learning a language model means learning which token comes next,   one step at a time.
"""


def training_lines() -> list[str]:
    lines = []
    for i, style in enumerate(STYLES):
        lines += generate_text(style, 300, seed=100 + i).splitlines(keepends=True)
    return lines + ENGLISH.splitlines(keepends=True) * 20


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table, in GPT-2's order: printable bytes map to themselves (listed first), then the
    others, in byte order, to chr(256), chr(257), ... GPT-2's vocab gives ids 0..255 in this order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in keep}
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + len(table) - len(keep))
    return table


def train_tokenizer() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train byte-level BPE (255 merges), then lay the vocab out as GPT-2 does."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE - 1, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(training_lines(), trainer=trainer)
    spec = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in spec["merges"]]
    vocab = {}
    for sym in bytes_to_unicode().values():
        vocab[sym] = len(vocab)
    for a, b in merges:
        assert a + b not in vocab, f"merge result {a + b!r} repeats"
        vocab[a + b] = len(vocab)
    assert set(vocab) == set(spec["vocab"]), "re-laid vocab differs from the trained one"
    vocab[EOT] = len(vocab)
    return vocab, merges


def write_tokenizer_files(vocab, merges) -> None:
    (HERE / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=True), encoding="utf-8")
    (HERE / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                     encoding="utf-8")


class OpenAIEncoder:
    """OpenAI's gpt-2/src/encoder.py algorithm (regex module), plus a split on <|endoftext|>."""

    pat = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    def __init__(self, vocab, merges):
        self.vocab, self.ranks, self.b2u = vocab, {m: i for i, m in enumerate(merges)}, bytes_to_unicode()

    def bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            adjacent = zip(parts[:-1], parts[1:], strict=True)
            pairs = [(self.ranks.get(p, 1e18), i) for i, p in enumerate(adjacent)]
            rank, i = min(pairs)
            if rank == 1e18:
                break
            pair, out, j = (parts[i], parts[i + 1]), [], 0
            while j < len(parts):
                if j < len(parts) - 1 and (parts[j], parts[j + 1]) == pair:
                    out.append(parts[j] + parts[j + 1])
                    j += 2
                else:
                    out.append(parts[j])
                    j += 1
            parts = out
        return parts

    def encode(self, text):
        ids = []
        for k, chunk in enumerate(text.split(EOT)):
            if k:
                ids.append(self.vocab[EOT])
            for piece in self.pat.findall(chunk):
                word = "".join(self.b2u[b] for b in piece.encode("utf-8"))
                ids += [self.vocab[t] for t in self.bpe(word)]
        return ids


def tricky_texts() -> list[str]:
    lines = [generate_text(s, 3, seed=7).splitlines()[k] for k in range(2) for s in STYLES]
    return lines + [
        generate_text("dialogue", 2, seed=3),                       # with its newlines
        "it's the grocer's; don't, we're, they've, I'm, you'll, he'd",
        "IT'S THE GROCER'S STALL, DON'T YOU'LL WE'D",
        "'sup 'tis 'll 'd 'm 're 've ' s '",
        "don''t and ''s and 'S and '' and it 's",
        "two  spaces,   three   spaces,    four.",
        "   leading spaces",
        "trailing spaces   ",
        " ",
        "   ",
        "\ttab\tseparated\t\tvalues\t",
        "first paragraph.\n\nsecond paragraph.\n",
        "windows\r\nline\r\nends\r\n",
        "\n",
        "a \n b  \n\n  c",
        "GRAPES x12 @30c; LEMONS x3 @1c; 1,000,000 and 3.14159 and 2026",
        "x² ½ Ⅻ ٣٤ and ８ full-width",
        "wait... what?!?! (yes) -- [ok] {} <> ##!! ...",
        "café naïve über Straße, crème brûlée",
        "水果店卖葡萄和柠檬。",
        "I 🍇 grapes 🍋🍒! 👩‍👩‍👧 family",
        "cafe\u0301 and e\u0301\u0301 and \u0301alone",
        "",
        "hello<|endoftext|>world",
        " a <|endoftext|> b<|endoftext|><|endoftext|>\n",
        "xylophone quizzically zigzags",
        "nbsp\u00a0here, ideographic\u3000space, em\u2003space, line\u2028sep, nel\x85end",
        "vertical\x0btab and form\x0cfeed and unit\x1fsep and zero\u200bwidth",
        "MiXeD CaSe WoRdS and ALLCAPS and lowercase",
        "email@example.com https://example.org/a?b=c#d",
        "    def f(x):\n        return x ** 2\n",
        "Ελληνικά, русский, עברית, العربية, हिन्दी",
        "<|endoftext",
        "<|notatoken|> and |> and <|",
    ]


def write_tokenizer_reference(vocab, merges) -> None:
    fast = transformers.GPT2TokenizerFast.from_pretrained(str(HERE))
    # transformers 5 has one GPT-2 tokenizer class (GPT2Tokenizer is GPT2TokenizerFast, on `tokenizers`);
    # its constructor takes the file paths as vocab= and merges= (vocab_file= is silently ignored there).
    direct = transformers.GPT2TokenizerFast(vocab=str(HERE / "vocab.json"), merges=str(HERE / "merges.txt"))
    openai = OpenAIEncoder(vocab, merges)
    assert len(fast) == len(vocab) == VOCAB_SIZE, (len(fast), len(vocab))
    assert fast.convert_tokens_to_ids(EOT) == vocab[EOT]
    rows = []
    for text in tricky_texts():
        ids = fast.encode(text)
        assert direct.encode(text) == ids, text
        assert openai.encode(text) == ids, (text, openai.encode(text), ids)
        decoded = fast.decode(ids, clean_up_tokenization_spaces=False)
        assert decoded == text, (text, decoded)
        rows.append({"text": text, "ids": ids})
    body = ",\n".join(" " + json.dumps(row, ensure_ascii=False) for row in rows)     # one text a line
    (HERE / "tokenizer_reference.json").write_text("[\n" + body + "\n]\n", encoding="utf-8")
    print(f"tokenizer: {len(vocab)} tokens, {len(merges)} merges, {EOT} = {vocab[EOT]}, "
          f"{len(rows)} reference texts ({type(fast).__name__})")
    return fast


def reference_ids(tok) -> np.ndarray:
    texts = [generate_text("inventory", 4, seed=11), generate_text("verse", 4, seed=12),
             "The grocer's apprentice counted 12 lemons, 7 plums and a basket of grapes before noon."]
    rows = []
    for text in texts:
        ids = tok.encode(text)
        assert len(ids) >= T, (len(ids), text)
        rows.append(ids[:T])
    return np.array(rows, dtype=np.int64)                                       # (B, T)


def make_model(eot: int) -> transformers.GPT2LMHeadModel:
    config = transformers.GPT2Config(vocab_size=VOCAB_SIZE, n_positions=64, n_embd=64, n_layer=2, n_head=4,
                                     activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                                     attn_pdrop=0.0, bos_token_id=eot, eos_token_id=eot)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" in name and name.endswith(".weight"):                     # LayerNorm gains ~ 1
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):                                        # LN shifts and biases
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


@torch.no_grad()
def logits(model, ids: np.ndarray) -> np.ndarray:
    return model(torch.from_numpy(ids)).logits.numpy()


def save_cast(model, dtype, name: str, ids: np.ndarray) -> np.ndarray:
    """Save the model in ``dtype`` as ``name``; return the logits of the reloaded model in float32."""
    with tempfile.TemporaryDirectory() as tmp:
        copy.deepcopy(model).to(dtype).save_pretrained(tmp, safe_serialization=True)
        loaded = transformers.GPT2LMHeadModel.from_pretrained(tmp, dtype=dtype).eval()
        assert loaded.transformer.wte.weight.dtype == dtype
        out = logits(loaded.float(), ids)
        shutil.move(str(Path(tmp) / "model.safetensors"), HERE / name)
    return out


def make_peft(model, ids: np.ndarray) -> dict:
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj", "c_fc", "lm_head"],
                             fan_in_fan_out=True, lora_dropout=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pm = peft.get_peft_model(copy.deepcopy(model), config)
    for w in caught:
        print(f"PEFT warning: {w.category.__name__}: {w.message}")
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    pm.eval()
    save_adapter(pm, "peft_adapter")
    pm64 = copy.deepcopy(pm).double()
    out = {"logits_f64": logits(pm64, ids)}
    # lm_head.weight IS transformer.wte.weight (tied): merging lm_head's update changes the embedding
    # too, so PEFT's merged model differs from the unmerged one. Untying first keeps them equal.
    out["merged_logits_f64"] = logits(copy.deepcopy(pm64).merge_and_unload(), ids)
    untied = copy.deepcopy(pm64)
    lm_head = untied.base_model.model.lm_head.base_layer
    lm_head.weight = torch.nn.Parameter(lm_head.weight.detach().clone())
    untied_merged = logits(untied.merge_and_unload(), ids)
    base64 = logits(copy.deepcopy(model).double(), ids)
    print("peft: max |peft - base| =", np.abs(out["logits_f64"] - base64).max(),
          "; max |merged - unmerged| =", np.abs(out["merged_logits_f64"] - out["logits_f64"]).max(),
          "; untied first:", np.abs(untied_merged - out["logits_f64"]).max())
    assert np.abs(reload(model, "peft_adapter", ids) - out["logits_f64"]).max() < 1e-12, "adapter reloads"
    return out


def reload(model, name: str, ids: np.ndarray) -> np.ndarray:
    """Logits (float64) of ``model`` with the saved adapter ``name`` loaded by PeftModel.from_pretrained."""
    reloaded = peft.PeftModel.from_pretrained(copy.deepcopy(model).double(), str(HERE / name))
    return logits(reloaded.eval(), ids)


def save_adapter(pm, name: str) -> None:
    """save_pretrained, without PEFT's boilerplate model card, target_modules sorted (PEFT writes a set,
    whose order changes from run to run), in PEFT's own JSON layout."""
    pm.save_pretrained(str(HERE / name))
    (HERE / name / "README.md").unlink(missing_ok=True)
    path = HERE / name / "adapter_config.json"
    config = json.loads(path.read_text())
    config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def make_peft_rslora(model, ids: np.ndarray) -> np.ndarray:
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True,
                             lora_dropout=0.0, use_rslora=True, bias="lora_only")
    pm = peft.get_peft_model(copy.deepcopy(model), config)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            elif name.endswith("c_attn.base_layer.bias"):                       # "trained" with lora_only
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    pm.eval()
    save_adapter(pm, "peft_adapter_rslora")
    out = logits(copy.deepcopy(pm).double(), ids)
    assert np.abs(reload(model, "peft_adapter_rslora", ids) - out).max() < 1e-12, "rsLoRA adapter reloads"
    return out


def main() -> None:
    for old in ("peft_adapter", "peft_adapter_rslora"):
        shutil.rmtree(HERE / old, ignore_errors=True)
    vocab, merges = train_tokenizer()
    write_tokenizer_files(vocab, merges)
    tok = write_tokenizer_reference(vocab, merges)
    ids = reference_ids(tok)

    model = make_model(vocab[EOT])
    model.save_pretrained(str(HERE), safe_serialization=True)
    with safetensors.safe_open(str(HERE / "model.safetensors"), "np") as f:
        print("model.safetensors:", {k: (f.get_slice(k).get_dtype(), f.get_slice(k).get_shape())
                                     for k in f.keys()})
    model64 = copy.deepcopy(model).double()
    # transformers computes its loss in float32 even for a float64 model, so the reference loss is
    # computed here, in float64, from the float64 logits: the mean next-token cross-entropy.
    z = torch.from_numpy(logits(model64, ids))
    loss64 = torch.nn.functional.cross_entropy(z[:, :-1].reshape(-1, z.shape[-1]),
                                               torch.from_numpy(ids[:, 1:]).reshape(-1)).item()
    ref = {"ids": ids, "logits_f64": logits(model64, ids),
           "logits_from_f16": save_cast(model, torch.float16, "model.float16.safetensors", ids),
           "logits_from_bf16": save_cast(model, torch.bfloat16, "model.bfloat16.safetensors", ids),
           "loss_f64": np.float64(loss64)}
    np.savez_compressed(HERE / "reference.npz", **ref)
    print(f"loss_f64 = {loss64:.6f} (log V = {np.log(VOCAB_SIZE):.3f})")

    pref = make_peft(model, ids)
    pref["rslora_logits_f64"] = make_peft_rslora(model, ids)
    np.savez_compressed(HERE / "peft_reference.npz", **pref)

    versions = {"python": sys.version.split()[0], "torch": torch.__version__,
                "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                "peft": peft.__version__, "safetensors": safetensors.__version__, "numpy": np.__version__,
                "regex": regex.__version__}
    (HERE / "VERSIONS.json").write_text(json.dumps(versions, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
