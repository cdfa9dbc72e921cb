"""``train.logits`` (outputs with no backward cache kept) and ``backend.max_abs`` (a float from any array)."""
import numpy as np

from lora_np import backend
from lora_np.models import MLP
from lora_np.train import logits


def small_model():
    return MLP(5, hidden=(7,), n_classes=3, seed=0)


def test_logits_match_a_forward_pass_keep_no_cache_and_restore_the_mode():
    model = small_model()
    X = backend.Rng(1).standard_normal((10, 5))                                       # (10, 5)
    model.eval()
    expected = model(X)                                                      # (10, 3)
    model.clear_caches()
    model.train()
    out = logits(model, X, batch_size=4)                                     # (10, 3), three batches
    assert out.shape == (10, 3)
    assert backend.max_abs(out - expected) == 0.0
    assert model.training
    assert all(getattr(m, "_cache", None) is None for _, m in model.named_modules())


def test_max_abs_is_a_python_float_of_the_largest_magnitude():
    x = backend.asarray([[1.0, -4.5], [2.0, 0.0]])
    value = backend.max_abs(x)
    assert type(value) is float and value == 4.5
    assert backend.max_abs(backend.asarray(np.zeros(3))) == 0.0
