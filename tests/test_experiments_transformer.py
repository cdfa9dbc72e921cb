"""The Transformer experiments: Table 5 at equal budget, the q,v goal on images, style adapters."""
import pytest

from lora_np.data import CharVocab, make_image_task, style_markers
from lora_np.experiments.styles import lora_model_for, pretrain_lm, sample, train_style_adapters, use_adapter
from lora_np.experiments.vit import pretrain_vit, table5
from lora_np.lora import lora_layers
from lora_np.models import TransformerConfig


@pytest.fixture(scope="module")
def image_run():
    """One full-size run (pretrain + Table 5 + full fine-tuning): ~15 s on NumPy."""
    cache = {}

    def get(backend_name):
        if backend_name not in cache:
            task = make_image_task()
            base, hist = pretrain_vit(task)
            cache[backend_name] = (task, base, hist, table5(base, task))
        return cache[backend_name]
    return get


@pytest.mark.once
def test_lora_on_q_and_v_recovers_full_finetuning_on_images(image_run, backend_name):
    task, base, hist, runs = image_run(backend_name)
    assert hist.val_accuracy[-1] > 0.9                              # pretraining works on source images
    labels = [r.label for r in runs]
    assert labels == ["Wq r=8", "Wv r=8", "Wq,Wv r=4", "Wq,Wk,Wv,Wo r=2", "full"]
    assert len({r.trainable for r in runs[:4]}) == 1                # the same budget
    qv, full = runs[2], runs[-1]
    assert qv.percent < 5.0
    assert qv.accuracy >= 0.90 * full.accuracy, (qv.accuracy, full.accuracy)
    assert runs[0].accuracy < min(r.accuracy for r in runs[1:4])    # W_q alone is the worst place to spend it


def test_style_adapters_change_character_statistics():
    vocab = CharVocab()
    cfg = TransformerConfig(vocab_size=vocab.size, d_model=32, n_heads=2, n_layers=1, context=24)
    base, hist = pretrain_lm(vocab, n_lines=300, epochs=2, config=cfg)
    assert hist.epoch_loss[-1] < hist.epoch_loss[0]
    adapters = train_style_adapters(base, vocab, ("inventory",), n_lines=200, epochs=3)
    model = lora_model_for(base)
    use_adapter(model, None)
    plain = style_markers(sample(model, vocab, "the ", 200, seed=1))
    use_adapter(model, adapters["inventory"], 1.0)
    inventory = style_markers(sample(model, vocab, "the ", 200, seed=1))
    assert inventory["upper_frac"] > plain["upper_frac"] + 0.3
    assert inventory["ats"] + inventory["semicolons"] > plain["ats"] + plain["semicolons"] + 3
    use_adapter(model, adapters["inventory"], 0.0)                  # strength 0 is the base model
    at_zero = sample(model, vocab, "the ", 60, seed=4)
    assert all(layer.strength == 0.0 for _, layer in lora_layers(model))
    assert at_zero == sample(base, vocab, "the ", 60, seed=4)
