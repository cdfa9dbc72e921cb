"""Fruit images: small, seeded RGB pictures of the ten fruit, drawn by code (nothing downloaded).

The same ten classes as :mod:`lora_np.data.fruit`, now as pictures ``X: (N, H, W, 3)`` in [0, 1]
for a small vision Transformer. Every fruit is painted on the host with whole-array NumPy
(one pass per class and per berry, never per pixel) from a few soft-edged ellipses:

* **shape**: one round blob (apple, orange, plum), a long curved one (banana), an ellipse with
  two nubs (lemon), a heart with seed dots and leaves (strawberry), or a cluster of small
  berries (a grape bunch, a blueberry handful, a pile of raisins, a pair of cherries);
* **surface**: a colour darkened towards the rim (it looks round), a bright spot where the lamp
  is reflected (``gloss``: strong on grapes and cherries, none on raisins), and a wavy stripe
  pattern that darkens the skin (``wrinkles``: raisins);
* **jitter**: position, size, colour, brightness and background noise differ in every image.

Grapes hang in bunches; raisins lie in a loose pile or, a third of them, still on their dried
stalk. So the shape of the cluster does not tell the two apart: colour, gloss and wrinkles do.

Two distributions, as in the feature task:

* **source** — the fruit the model is pretrained on;
* **shifted** — a new harvest under a new lamp. The lamp is warm and dim: a 3×3 colour matrix on
  every pixel (``rgb' = L rgb``: blue light mostly gone) that the camera's white balance corrects
  only partly, and more sensor noise. Its low, diffuse light takes the sheen off glossy skins: no
  highlight, a darker skin and faint wrinkles, each in proportion to the fruit's gloss. A grape
  now reads dark, matte and creased, and a model trained on the source images calls it a raisin.
  Grapes and raisins still differ (raisins are smaller, browner, more wrinkled, mostly not in a
  bunch), so the new harvest stays perfectly learnable.

Generating 5000 images of 16×16 takes about 0.4 s on one CPU core. The same seed draws the same fruit at every
``size`` and in both splits (only the lamp differs), so ``make_fruit_images(n, "shifted", seed=s)``
shows the very fruit of ``make_fruit_images(n, "source", seed=s)`` under the new lamp.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as _host_np  # images are drawn on the host, then moved to the device

from .. import backend, validate
from .fruit import FRUITS

SPLITS = ("source", "shifted")
# (colour A, colour B, gloss): each image mixes A and B with a random weight; apples and grapes
# are either A (two in three) or B (one in three): red or green apples, purple or green grapes.
SPEC = {
    "apple":      ((0.80, 0.10, 0.10), (0.58, 0.80, 0.22), 0.3),
    "banana":     ((0.96, 0.84, 0.20), (0.78, 0.86, 0.25), 0.0),
    "blueberry":  ((0.20, 0.26, 0.58), (0.32, 0.38, 0.66), 0.1),
    "cherry":     ((0.62, 0.02, 0.08), (0.80, 0.06, 0.12), 0.9),
    "grape":      ((0.45, 0.18, 0.50), (0.58, 0.78, 0.30), 0.9),
    "lemon":      ((0.98, 0.92, 0.26), (0.92, 0.95, 0.40), 0.1),
    "orange":     ((1.00, 0.56, 0.05), (0.95, 0.42, 0.04), 0.0),
    "plum":       ((0.42, 0.10, 0.30), (0.32, 0.08, 0.38), 0.4),
    "raisin":     ((0.34, 0.18, 0.10), (0.30, 0.14, 0.15), 0.0),
    "strawberry": ((0.92, 0.10, 0.14), (0.80, 0.05, 0.12), 0.3),
}
TWO_KINDS = ("apple", "grape")
RAISIN_RADIUS = 0.085          # a grape berry is 0.095 (fractions of the image width)
RAISIN_ON_STALK = 1 / 3        # raisins still on their stalk: a bunch, like grapes
RAISIN_WRINKLES = 0.7          # how much the raisin's stripes darken its skin
# The new lamp is warm (red kept, some green lost, blue mostly gone): rgb' = SHIFT_LIGHT @ rgb per pixel.
SHIFT_LIGHT = _host_np.array([[1.00, 0.00, 0.00],
                              [0.03, 0.80, 0.02],
                              [0.02, 0.05, 0.50]])
SHIFT_WHITE_BALANCE = 0.6      # the camera undoes this much of the cast (judged on the table), in log space
SHIFT_NOISE = 0.04             # a dim lamp means a noisier camera (source: 0.02)
SHIFT_GLOSS = 0.1              # what is left of the highlights
SHIFT_DARKEN = 0.5             # how much darker a glossy skin looks without its sheen, per unit of gloss
SHIFT_WRINKLES = 0.35          # wrinkles the low lamp shows on a skin, per unit of gloss


class _Canvas:
    """The images of one class being drawn: the pixel grid, the canvas and the per-image draws."""

    def __init__(self, m, size, rng, shifted):
        c = (_host_np.arange(size) + 0.5) / size                # (S,) pixel centres in the unit square
        self.yy, self.xx = c[None, :, None], c[None, None, :]   # (1, S, 1), (1, 1, S)
        self.m, self.size, self.rng, self.shifted = m, size, rng, shifted
        self.img = _host_np.empty((m, size, size, 3))           # (m, S, S, 3)
        self.cy = 0.5 + rng.uniform(-0.1, 0.1, m)               # (m,) where the fruit sits
        self.cx = 0.5 + rng.uniform(-0.1, 0.1, m)               # (m,)
        self.k = rng.uniform(0.85, 1.15, m)                     # (m,) its size
        u = rng.uniform(0.0, _host_np.pi, m)                    # (m,) wrinkle direction
        p = self.xx * _host_np.cos(u)[:, None, None] + self.yy * _host_np.sin(u)[:, None, None]   # (m, S, S)
        q = self.yy * _host_np.cos(u)[:, None, None] - self.xx * _host_np.sin(u)[:, None, None]   # (m, S, S)
        phase = rng.uniform(0.0, 2 * _host_np.pi, (m, 1, 1))     # (m, 1, 1)
        self.stripes = 0.5 + 0.5 * _host_np.sin(2 * _host_np.pi * p / 0.13 + 2.0 * _host_np.sin(
            2 * _host_np.pi * q / 0.3) + phase)                  # (m, S, S) in [0, 1]

    def colour(self, name):
        """(m, 3) per-image colours between the class's two colours (TWO_KINDS: one or the other)."""
        a, b, _ = (_host_np.array(v) for v in SPEC[name])
        w = self.rng.random(self.m)                                                                  # (m,)
        w = (w < 1 / 3) * 1.0 if name in TWO_KINDS else w
        return a + w[:, None] * (b - a) + self.rng.uniform(-0.04, 0.04, (self.m, 3))                # (m, 3)

    def _column(self, v):
        """A scalar or an (m,) array -> (m, 1, 1), one value per image, broadcast over the pixels."""
        return _host_np.broadcast_to(v, (self.m,))[:, None, None]       # (m, 1, 1)

    def blob(self, cy, cx, ry, rx, bend=0.0, taper=0.0):
        """Soft ellipses (anti-aliased over one pixel), centres/radii (m,) in unit coordinates.

        ``bend`` curves the long axis (a banana), ``taper`` narrows the lower half (a strawberry).
        Returns the mask, the normalised radius r (1 on the rim) and the offsets dy, dx, all (m, S, S).
        """
        cy, cx, ry, rx, bend = (self._column(v) for v in (cy, cx, ry, rx, bend))   # (m, 1, 1) each
        dx = (self.xx - cx) / rx                                         # (m, 1, S)
        dy = (self.yy - cy - bend * ry * dx ** 2) / ry                   # (m, S, S)
        dx = dx / (1.0 - taper * _host_np.clip(dy, 0.0, 1.0))            # (m, S, S) narrower below
        r = _host_np.sqrt(dy ** 2 + dx ** 2)                             # (m, S, S)
        edge = (r - 1.0) * _host_np.minimum(ry, rx) * self.size          # (m, S, S) ≈ pixels outside
        return _host_np.clip(0.5 - edge, 0.0, 1.0), r, dy, dx

    def segment(self, p0, p1, width):
        """Soft mask (m, S, S) of a line from p0 to p1 (each a pair of (m,) arrays: y, x)."""
        (y0, x0), (y1, x1) = ((self._column(v) for v in p) for p in (p0, p1))      # (m, 1, 1) each
        t = ((self.yy - y0) * (y1 - y0) + (self.xx - x0) * (x1 - x0)) / ((y1 - y0) ** 2 + (x1 - x0) ** 2)
        t = _host_np.clip(t, 0.0, 1.0)                                   # (m, S, S) nearest point on the line
        d = _host_np.hypot(self.yy - y0 - t * (y1 - y0), self.xx - x0 - t * (x1 - x0))   # (m, S, S)
        return _host_np.clip(0.5 - (d - width / 2) * self.size, 0.0, 1.0)

    def paint(self, mask, colour):
        """Lay ``colour`` ((m, 3) or (m, S, S, 3)) over the canvas where ``mask`` (m, S, S) is 1."""
        a = mask[..., None]                                              # (m, S, S, 1)
        colour = colour if colour.ndim == 4 else colour[:, None, None, :]
        self.img = (1.0 - a) * self.img + a * colour                     # (m, S, S, 3)

    def fruit(self, name, colour, cy, cx, ry, rx, wrinkles=0.0, present=1.0, **shape):
        """Paint one shaded fruit: rim shading, wrinkles, and the lamp's highlight (gloss)."""
        gloss, dark = SPEC[name][2], 1.0
        if self.shifted:
            gloss, wrinkles, dark = (SHIFT_GLOSS * gloss, wrinkles + SHIFT_WRINKLES * gloss,
                                     1.0 - SHIFT_DARKEN * gloss)
        mask, r, dy, dx = self.blob(cy, cx, ry, rx, **shape)
        rim = 1.0 - 0.35 * _host_np.clip(r, 0, 1) ** 2                   # (m, S, S) darker towards the rim
        shade = dark * rim * (1.0 - wrinkles * self.stripes)             # (m, S, S)
        spot = gloss * _host_np.exp(-((dy + 0.4) ** 2 + (dx + 0.35) ** 2) / (2 * 0.3 ** 2))     # (m, S, S)
        surface = colour[:, None, None, :] * shade[..., None]            # (m, S, S, 3)
        surface = surface + spot[..., None] * (1.0 - surface)            # (m, S, S, 3) towards white
        self.paint(mask * present, surface)
        return mask


# --------------------------------------------------------------------------- the ten fruit
# Each draws on a _Canvas ``c``; sizes are in unit coordinates (the image is 1 × 1), times c.k.

def _round(c, name, ry, rx):           # apple, orange, plum: one big round fruit with a stem
    cy, cx, k = c.cy, c.cx, c.k
    c.fruit(name, c.colour(name), cy, cx, ry * k, rx * k)
    c.paint(c.segment((cy - ry * k - 0.06, cx + 0.02), (cy - ry * k * 0.8, cx), 0.05), _BROWN)


def _banana(c):
    cy, cx, k, col = c.cy, c.cx, c.k, c.colour("banana")
    bend = _host_np.where(c.rng.random(c.m) < 0.5, -1.0, 1.0) * 1.2   # (m,) curving up or down
    mask = c.fruit("banana", col, cy, cx, 0.11 * k, 0.40 * k, bend=bend)
    for side in (-1, 1):               # brown tips
        c.paint(mask * c.blob(cy + bend * 0.11 * k, cx + side * 0.38 * k, 0.07 * k, 0.05 * k)[0], _BROWN)


def _lemon(c):
    cy, cx, k, col = c.cy, c.cx, c.k, c.colour("lemon")
    for side in (-1, 1):               # the two pointed nubs
        c.fruit("lemon", col, cy, cx + side * 0.29 * k, 0.06 * k, 0.06 * k)
    c.fruit("lemon", col, cy, cx, 0.22 * k, 0.30 * k)


def _strawberry(c):
    cy, cx, k, col = c.cy, c.cx, c.k, c.colour("strawberry")
    mask = c.fruit("strawberry", col, cy + 0.03, cx, 0.30 * k, 0.28 * k, taper=0.6)
    ph = c.rng.uniform(0, 2 * _host_np.pi, (2, c.m, 1, 1))               # (2, m, 1, 1) seed lattice
    seeds = (_host_np.sin(2 * _host_np.pi * c.yy / 0.19 + ph[0]) * _host_np.sin(
        2 * _host_np.pi * c.xx / 0.19 + ph[1]) > 0.8) * 1.0              # (m, S, S) yellow dots
    c.paint(mask * seeds * 0.8, _host_np.array([[0.98, 0.88, 0.45]]))
    c.paint(c.blob(cy - 0.27 * k, cx, 0.06 * k, 0.22 * k)[0], _host_np.array([[0.15, 0.55, 0.15]]))


# Berry layouts, in berry radii: a bunch (grape: 3-2-1 rows and a stem), a handful, a pair.
_BUNCH = _host_np.array([(-1.8, -2.0), (-1.8, 0.0), (-1.8, 2.0), (-0.1, -1.0), (-0.1, 1.0), (1.6, 0.0)])
_BROWN = _host_np.array([[0.40, 0.25, 0.10]])
_GREEN_STEM = _host_np.array([[0.30, 0.45, 0.10]])


def _berries(c, name, radius, offsets, n_min, colour, wrinkles=0.0, irregular=0.0, jitter=0.3):
    """A cluster: berry j sits at offsets[:, j] (m, K, 2) berry radii from the centre; n_min..K shown."""
    m, K = c.m, offsets.shape[1]
    n = c.rng.integers(n_min, K + 1, m)                                  # (m,) berries in each image
    rad = radius * c.k                                                   # (m,)
    pos = offsets + c.rng.uniform(-jitter, jitter, (m, K, 2))           # (m, K, 2)
    for j in range(K):
        ry, rx = (rad * (1 + c.rng.uniform(-irregular, irregular, m)) for _ in range(2))   # (m,), (m,)
        c.fruit(name, colour, c.cy + pos[:, j, 0] * rad, c.cx + pos[:, j, 1] * rad, ry, rx,
                wrinkles=wrinkles, present=(j < n)[:, None, None] * 1.0)


def _grape(c):
    rad = 0.095 * c.k
    c.paint(c.segment((c.cy - 2.9 * rad, c.cx + 0.5 * rad), (c.cy - 1.8 * rad, c.cx), 0.05), _BROWN)
    _berries(c, "grape", 0.095, _host_np.broadcast_to(_BUNCH, (c.m,) + _BUNCH.shape), 5,
             c.colour("grape"), jitter=0.15)


def _scatter(c, n, spread):            # random offsets in a disk of radius ``spread`` (berry radii)
    a, r = c.rng.uniform(0, 2 * _host_np.pi, (c.m, n)), spread * _host_np.sqrt(c.rng.random((c.m, n)))
    return _host_np.stack([r * _host_np.sin(a), r * _host_np.cos(a)], axis=-1)   # (m, n, 2)


def _blueberry(c):                     # a handful: five places around a ring, so berries never stack up
    a = c.rng.uniform(0, 2 * _host_np.pi, (c.m, 1)) + 2 * _host_np.pi * _host_np.arange(5) / 5   # (m, 5)
    r = c.rng.uniform(1.2, 1.8, (c.m, 1))                                                      # (m, 1)
    ring = _host_np.stack([r * _host_np.sin(a), r * _host_np.cos(a)], axis=-1)                 # (m, 5, 2)
    _berries(c, "blueberry", 0.11, ring, 3, c.colour("blueberry"))


def _raisin(c):                        # a loose pile, or (RAISIN_ON_STALK of them) a dried bunch
    rad = RAISIN_RADIUS * c.k                                            # (m,)
    on_stalk = c.rng.random(c.m) < RAISIN_ON_STALK                       # (m,)
    stalk = c.segment((c.cy - 2.9 * rad, c.cx + 0.5 * rad), (c.cy - 1.8 * rad, c.cx), 0.05)   # (m, S, S)
    c.paint(stalk * on_stalk[:, None, None], _BROWN)
    offsets = _host_np.where(on_stalk[:, None, None], _BUNCH, _scatter(c, len(_BUNCH), 2.2))   # (m, 6, 2)
    _berries(c, "raisin", RAISIN_RADIUS, offsets, 5, c.colour("raisin"),
             wrinkles=RAISIN_WRINKLES, irregular=0.25)


def _cherry(c):
    rad = 0.13 * c.k
    knot = (c.cy - 3.2 * rad, c.cx + 0.3 * rad)                          # where the two stems meet
    for side in (-1, 1):
        c.paint(c.segment(knot, (c.cy - 0.6 * rad, c.cx + side * 1.1 * rad), 0.04), _GREEN_STEM)
    pair = _host_np.broadcast_to(_host_np.array([(0.4, -1.1), (0.4, 1.1)]), (c.m, 2, 2))
    _berries(c, "cherry", 0.13, pair, 1, c.colour("cherry"), jitter=0.2)


DRAW = {"apple": lambda c: _round(c, "apple", 0.29, 0.31), "banana": _banana, "blueberry": _blueberry,
        "cherry": _cherry, "grape": _grape, "lemon": _lemon,
        "orange": lambda c: _round(c, "orange", 0.31, 0.31),
        "plum": lambda c: _round(c, "plum", 0.27, 0.23), "raisin": _raisin, "strawberry": _strawberry}


# --------------------------------------------------------------------------- the data sets

def make_fruit_images(n: int, split: str = "source", size: int = 16, seed: int = 0):
    """``n`` fruit images (balanced over classes, shuffled) as host arrays.

    Returns ``X: (n, size, size, 3)`` float32 in [0, 1] and ``y: (n,)`` int64 class indices into FRUITS.
    """
    n = validate.positive_int(n, "n")
    split = validate.choice(split, "split", SPLITS)
    size = validate.integer(size, "size", low=8)                    # pixels
    rng, noise = (_host_np.random.default_rng(s) for s in _host_np.random.SeedSequence(seed).spawn(2))
    y = rng.permutation(_host_np.arange(n) % len(FRUITS)).astype(_host_np.int64)   # (n,)
    X = _host_np.empty((n, size, size, 3), dtype=_host_np.float32)                   # (n, S, S, 3)
    for label, name in enumerate(FRUITS):
        idx = _host_np.flatnonzero(y == label)                          # (m,)
        if idx.size == 0:
            continue
        c = _Canvas(idx.size, size, rng, split == "shifted")
        table = _host_np.array([0.86, 0.84, 0.78]) + rng.uniform(-0.06, 0.06, (idx.size, 3))   # (m, 3)
        c.img[:] = table[:, None, None, :] + 0.02 * noise.standard_normal((idx.size, size, size, 1))
        DRAW[name](c)
        X[idx] = _light(c.img * rng.uniform(0.85, 1.15, (idx.size, 1, 1, 1)), table, c.shifted, noise)
    return X, y


def _light(img, table, shifted, noise):
    """The lamp and the camera: img (m, S, S, 3), table (m, 3) -> clipped to [0, 1], with sensor noise.

    New lamp (shifted): ``rgb' = g ⊙ (L rgb)`` per pixel, with the camera's white-balance gains
    ``g = (t / L t)^β`` computed on the table colour t: β = 1 would restore the table exactly,
    β = SHIFT_WHITE_BALANCE < 1 leaves a warm cast.
    """
    sigma = 0.02
    if shifted:
        gains = (table / (table @ SHIFT_LIGHT.T)) ** SHIFT_WHITE_BALANCE   # (m, 3)
        img = (img @ SHIFT_LIGHT.T) * gains[:, None, None, :]           # (m, S, S, 3)
        sigma = SHIFT_NOISE
    img = img + sigma * noise.standard_normal(img.shape)                 # (m, S, S, 3)
    return _host_np.clip(img, 0.0, 1.0)


@dataclass
class ImageTask:
    """The four splits of the fruit story as images, on the current backend.

    source_train / source_test: for pretraining.  shift_train: the few labelled images of the new
    harvest used for fine-tuning.  shift_test: where we measure whether the fix worked.
    Each split is ``(X, y)`` with ``X: (N, H, W, 3)`` and ``y: (N,)``.
    """

    source_train: tuple
    source_test: tuple
    shift_train: tuple
    shift_test: tuple
    image_size: int
    classes: tuple = FRUITS

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def to(self, backend_name: str | None = None) -> ImageTask:
        """Move every split's ``(X, y)`` to ``backend_name`` (default: the current backend); returns self."""
        return backend.to_device(self, backend_name)


def make_image_task(n_pretrain: int = 3000, n_finetune: int = 500, n_test: int = 1000, size: int = 16,
                    seed: int = 0, dtype=None) -> ImageTask:
    """Generate every split (seeded) and move it to the current backend's device."""
    for name, n in (("n_pretrain", n_pretrain), ("n_finetune", n_finetune), ("n_test", n_test)):
        validate.positive_int(n, name)
    size = validate.integer(size, "size", low=8)                    # pixels

    def split(n, kind, s):
        X, y = make_fruit_images(n, kind, size, seed=seed * 10 + s)
        return backend.asarray(X, dtype=dtype), backend.asarray(y)

    return ImageTask(split(n_pretrain, "source", 1), split(n_test, "source", 2),
                     split(n_finetune, "shifted", 3), split(n_test, "shifted", 4), size)


def image_grid(X, y=None, classes=FRUITS, ncols: int = 10, ax=None):
    """Draw images ``X: (N, H, W, 3)`` (any backend) in a grid with their labels ``y``; returns the figure."""
    import matplotlib.pyplot as plt
    X = backend.to_numpy(X)
    if X.ndim != 4 or X.shape[-1] != 3 or X.shape[0] == 0:
        raise ValueError(f"X must have shape (N, H, W, 3) with N >= 1, got {X.shape}")
    ncols = validate.positive_int(ncols, "ncols")
    labels = None if y is None else backend.to_numpy(y)
    if labels is not None and labels.shape != (len(X),):
        raise ValueError(f"y must have shape ({len(X)},), got {labels.shape}")
    N, H, W, _ = X.shape
    cols, rows = min(ncols, N), -(-N // ncols)
    gap, top = max(1, W // 8), (H // 2 if labels is not None else max(1, H // 8))   # pixels between tiles
    sheet = _host_np.ones((rows * (H + top), cols * (W + gap), 3))    # (rows·(H+top), cols·(W+gap), 3) white
    for i in range(N):
        r, k = divmod(i, ncols)
        sheet[r * (H + top) + top:(r + 1) * (H + top), k * (W + gap):k * (W + gap) + W] = X[i]
    if ax is None:
        _, ax = plt.subplots(figsize=(1.0 * cols + 0.2, 1.25 * rows + 0.2))
    ax.imshow(_host_np.clip(sheet, 0, 1), interpolation="nearest")
    if labels is not None:
        for i, lab in enumerate(labels):
            r, k = divmod(i, ncols)
            ax.text(k * (W + gap) + W / 2, r * (H + top) + top - 0.8, classes[int(lab)],
                    ha="center", va="bottom", fontsize=7)
    ax.set_axis_off()
    return ax.figure
