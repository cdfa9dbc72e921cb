"""Notebook 02's questions (its your-turn pair is checked by :func:`lora_np.course.check_lora_pair`)."""
from __future__ import annotations

from .exercises import Exercise, choice_of, register

register({
    "predict_r16_recall": Exercise(
        prompt="The slider starts at r = 4. Before moving it to r = 16: what will held-out grape recall do? "
               "(a) rise clearly: more rank fits more; (b) stay about the same, or even drop a little; "
               "(c) fall to about zero. Answer 'a', 'b' or 'c'.",
        answer="b",
        check=choice_of("b", options={
            "a": "not here: more rank lets the adapter fit the 500 training fruit better, but the shift "
                 "it has to undo has rank 2, so there is nothing left for the extra rank to fix on new fruit",
            "b": "",
            "c": "no: a larger r can always do what a smaller one does (set the extra rows of A to zero); "
                 "training does not forget how to undo the shift"},
            right="right: the shift has rank 2, so past r ≈ 2–4 the extra rank fits the training fruit, "
                  "not the new harvest; training loss falls, held-out recall does not follow"),
        solution="The new harvest differs from the old by a rank-2 shift of the features. LoRA at r = 2 can "
                 "already undo it; a larger r adds capacity that only fits the 500 labelled fruit more "
                 "closely (lower training loss) without helping on held-out fruit, and can even hurt a "
                 "little (overfitting). So (b): the held-out panel flattens while the loss panel keeps "
                 "improving. One seed is an anecdote: notebook 05 repeats such sweeps."),
})
