"""The image and text data sets: seeded, well-formed, and telling the stories they claim.

Images: shapes, ranges, balance, determinism, and the shift — a nearest-centroid classifier on the
mean colour of the fruit (fitted on source images) calls most shifted grapes raisins.
Text: each style carries its own marks, the vocabulary covers every style, X/Y are shifted by one.
Arguments of the image, text and fruit-feature generators: a bad one is named, a NumPy integer is fine.
Statistics are computed on host copies (backend.to_numpy); library calls get backend arrays only.
"""
import numpy as np
import pytest

from lora_np import backend
from lora_np.data.fruit import FRUITS, GRAPE, RAISIN, make_fruit_task, sample_fruit, shift_matrix
from lora_np.data.images import ImageTask, image_grid, make_fruit_images, make_image_task
from lora_np.data.text import (
    ALPHABET,
    STYLES,
    CharVocab,
    generate_text,
    guess_style,
    make_text_dataset,
    style_markers,
)

# --------------------------------------------------------------------------- images


def test_images_shapes_range_and_balance():
    X, y = make_fruit_images(50, seed=3)
    assert X.shape == (50, 16, 16, 3) and X.dtype == np.float32
    assert y.shape == (50,) and y.dtype == np.int64
    assert 0.0 <= X.min() and X.max() <= 1.0
    assert np.bincount(y, minlength=len(FRUITS)).tolist() == [5] * len(FRUITS)
    assert not np.array_equal(y, np.sort(y))                          # shuffled
    Xs, _ = make_fruit_images(10, "shifted", size=8, seed=3)
    assert Xs.shape == (10, 8, 8, 3) and 0.0 <= Xs.min() and Xs.max() <= 1.0


def test_images_are_seeded():
    X1, y1 = make_fruit_images(30, "shifted", seed=7)
    X2, y2 = make_fruit_images(30, "shifted", seed=7)
    X3, _ = make_fruit_images(30, "shifted", seed=8)
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    assert not np.array_equal(X1, X3)
    _, y_src = make_fruit_images(30, "source", seed=7)
    assert np.array_equal(y_src, y1)                                   # same fruit, new lamp


def _fruit_colour(X):
    """Mean colour (n, 3) of the pixels that differ from the table (read on the image border)."""
    border = np.concatenate([X[:, 0], X[:, -1], X[:, :, 0], X[:, :, -1]], axis=1)   # (n, 4S, 3)
    table = np.median(border, axis=1)                                                 # (n, 3)
    mask = np.abs(X - table[:, None, None]).sum(-1) > 0.3                             # (n, S, S)
    return (X * mask[..., None]).sum((1, 2)) / np.maximum(mask.sum((1, 2)), 1)[:, None]


def test_shift_makes_grapes_look_like_raisins():
    Xs, ys = make_fruit_images(300, "source", seed=1)
    Xt, yt = make_fruit_images(300, "shifted", seed=2)
    fs, ft = _fruit_colour(Xs), _fruit_colour(Xt)                      # (n, 3)
    centroids = np.stack([fs[ys == k].mean(0) for k in range(len(FRUITS))])    # (10, 3)
    pred_s = ((fs[:, None] - centroids) ** 2).sum(-1).argmin(1)
    pred_t = ((ft[:, None] - centroids) ** 2).sum(-1).argmin(1)
    assert np.mean(pred_s[ys == GRAPE] == RAISIN) <= 0.1               # source grapes are not raisins ...
    assert np.mean(pred_t[yt == GRAPE] == RAISIN) >= 0.6               # ... shifted grapes are
    gap_before = np.linalg.norm(centroids[GRAPE] - centroids[RAISIN])
    gap_after = np.linalg.norm(ft[yt == GRAPE].mean(0) - centroids[RAISIN])
    assert gap_after < 0.3 * gap_before
    # the lamp shows: the table turns warm (more red than blue) in the shifted images
    def warm(X):
        return np.mean(X[:, 0, :, 0] - X[:, 0, :, 2])                 # red minus blue along the top row
    assert warm(Xt) > warm(Xs) + 0.05


@pytest.mark.parametrize("kwargs, name", [
    (dict(n=0), "n"), (dict(n=2.5), "n"), (dict(n=True), "n"),
    (dict(n=10, split="new"), "split"), (dict(n=10, size=4), "size"), (dict(n=10, size=16.0), "size"),
])
def test_images_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} must"):
        make_fruit_images(**kwargs)


def test_image_task_lives_on_the_backend():
    task = make_image_task(n_pretrain=20, n_finetune=10, n_test=10, size=8, seed=1)
    assert isinstance(task, ImageTask) and task.image_size == 8 and task.n_classes == len(FRUITS)
    xp = backend.get_xp()
    for X, y in (task.source_train, task.source_test, task.shift_train, task.shift_test):
        assert backend.get_array_module(X) is xp and backend.get_array_module(y) is xp
        assert X.dtype == backend.default_dtype() and y.dtype == np.int64
    assert task.source_train[0].shape == (20, 8, 8, 3) and task.shift_train[1].shape == (10,)
    X64 = make_image_task(n_pretrain=10, n_finetune=10, n_test=10, size=8, dtype="float64").shift_test[0]
    assert X64.dtype == np.float64
    with pytest.raises(ValueError, match="^n_finetune must"):
        make_image_task(n_finetune=0)


def test_image_grid_draws_labelled_tiles():
    import matplotlib.pyplot as plt
    task = make_image_task(n_pretrain=10, n_finetune=10, n_test=12, size=8)
    X, y = task.shift_test                                             # device arrays are fine
    fig = image_grid(X, y, ncols=6)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels == [FRUITS[int(k)] for k in backend.to_numpy(y)]
    plt.close(fig)
    with pytest.raises(ValueError, match="^X must"):
        image_grid(X[:, :, :, 0])
    with pytest.raises(ValueError, match="^ncols must"):
        image_grid(X, ncols=0)

# --------------------------------------------------------------------------- text


def test_each_style_has_its_marks():
    m = {s: style_markers(generate_text(s, 200, seed=1)) for s in STYLES}
    assert m["inventory"]["semicolons"] > 3 and m["inventory"]["ats"] > 3
    assert m["inventory"]["upper_frac"] > 0.5 and m["inventory"]["digits"] > 5
    for s in ("plain", "verse", "dialogue"):
        assert m[s]["semicolons"] == m[s]["ats"] == m[s]["upper_frac"] == m[s]["digits"] == 0
    assert m["verse"]["oh"] >= 0.4 and m["verse"]["commas"] > 2
    assert m["plain"]["oh"] == m["inventory"]["oh"] == m["dialogue"]["oh"] == 0
    assert m["plain"]["commas"] == 0 and m["plain"]["colons"] == 0
    assert m["dialogue"]["colons"] == 1 and m["dialogue"]["questions"] > 0.3
    for s in STYLES:
        assert guess_style(generate_text(s, 20, seed=5)) == s


def test_generate_text_is_seeded_and_counts_lines():
    for s in STYLES:
        t = generate_text(s, 7, seed=2)
        assert t == generate_text(s, 7, seed=2) and t != generate_text(s, 7, seed=3)
        assert t.count("\n") == 7 and t.endswith("\n")
    with pytest.raises(ValueError, match="^style must"):
        generate_text("haiku", 3)
    with pytest.raises(ValueError, match="^n_lines must"):
        generate_text("plain", 0)


def test_vocab_covers_every_style_and_round_trips():
    vocab = CharVocab()
    assert vocab.chars == ALPHABET == "".join(sorted(set(ALPHABET))) and vocab.size == len(ALPHABET)
    assert "{" not in ALPHABET and "\n" in ALPHABET
    for s in STYLES:
        text = generate_text(s, 50, seed=4)
        ids = vocab.encode(text)
        assert isinstance(ids, np.ndarray) and ids.dtype == np.int64 and ids.shape == (len(text),)
        assert vocab.decode(ids) == text                               # host array
        assert vocab.decode(backend.asarray(ids)) == text              # current backend
    assert vocab.decode([0, 1]) == ALPHABET[:2]


def test_vocab_errors_name_the_problem():
    vocab = CharVocab()
    with pytest.raises(ValueError, match="'Z' at position 6"):
        vocab.encode("grape Zest")
    with pytest.raises(ValueError, match="^ids must lie"):
        vocab.decode(backend.asarray(np.array([0, vocab.size])))
    with pytest.raises(ValueError, match="^chars must not repeat"):
        CharVocab("abca")
    assert CharVocab("ab").encode("ba").tolist() == [1, 0]


def test_text_dataset_targets_are_shifted_by_one():
    X, Y = make_text_dataset("inventory", n_lines=40, context=16, seed=2)
    xp = backend.get_xp()
    assert backend.get_array_module(X) is xp and backend.get_array_module(Y) is xp
    Xh, Yh = backend.to_numpy(X), backend.to_numpy(Y)
    assert Xh.shape == Yh.shape and Xh.shape[1] == 16 and Xh.dtype == Yh.dtype == np.int64
    assert np.array_equal(Xh[:, 1:], Yh[:, :-1])
    vocab, text = CharVocab(), generate_text("inventory", 40, seed=2)
    assert vocab.decode(X[0]) + vocab.decode(Y[0])[-1] == text[:17]
    assert vocab.decode(X[1]) == text[16:32]                           # default stride: context
    X2, _ = make_text_dataset("inventory", n_lines=40, context=16, seed=2)
    assert np.array_equal(Xh, backend.to_numpy(X2))
    Xs, _ = make_text_dataset("verse", n_lines=10, context=8, stride=1)
    assert np.array_equal(backend.to_numpy(Xs)[1, :-1], backend.to_numpy(Xs)[0, 1:])


@pytest.mark.parametrize("kwargs, name", [
    (dict(context=0), "context"), (dict(context=2.5), "context"), (dict(stride=0), "stride"),
    (dict(n_lines=-1), "n_lines"), (dict(style="shout"), "style"), (dict(n_lines=1, context=500), "context"),
])
def test_text_dataset_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        make_text_dataset(**{"style": "plain", **kwargs})


# --------------------------------------------------------------------------- arguments

@pytest.mark.host_only
@pytest.mark.parametrize("make, match", [
    (lambda: make_fruit_task(n_pretrain=0), "^n_pretrain must be a positive integer, got 0$"),
    (lambda: make_fruit_task(n_test=10.0), "^n_test must be a positive integer, got 10.0$"),
    (lambda: make_fruit_task(shift_rank=21), r"^shift_rank must be an integer in \[0, 20\], got 21$"),
    (lambda: make_fruit_task(shift_strength=float("inf")), "^shift_strength must be a finite number >= 0"),
    (lambda: sample_fruit(True), "^n must be a positive integer, got True$"),
    (lambda: sample_fruit(10, split="new"), r"^split must be one of \('source', 'shifted'\), got 'new'$"),
    (lambda: shift_matrix(2, strength=-1.0), "^strength must be a finite number >= 0, got -1.0$"),
    (lambda: make_image_task(size=4), "^size must be an integer >= 8, got 4$"),
    (lambda: make_text_dataset("plain", stride=1.5), "^stride must be a positive integer, got 1.5$"),
    (lambda: generate_text("plain", True), "^n_lines must be a positive integer, got True$"),
])
def test_data_arguments_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.host_only
def test_numpy_integers_are_fine_counts():
    X, y = sample_fruit(np.int64(20), shift_rank=np.int32(3), split="shifted")
    assert X.shape == (20, 20) and y.shape == (20,)
    Xi, _ = make_fruit_images(np.int64(10), size=np.int64(8))
    assert Xi.shape == (10, 8, 8, 3)
    assert generate_text("verse", np.int64(3)).count("\n") == 3
    task = make_fruit_task(shift_rank=np.int64(2), n_pretrain=10, n_finetune=10, n_test=10, shift_strength=1)
    assert type(task.shift_rank) is int and type(task.shift_strength) is float
