"""What every exercise checker must do, for the tests of each notebook's exercises: the right answer
passes; a wrong one fails with a reason; the feedback never shows the answer; and the committed
notebook has one placeholder cell per exercise that runs and says "no answer yet"."""
from lora_np.course import check_exercise


def assert_accepts(name, answer):
    fb = check_exercise(name, answer)
    assert fb.passed and fb.lines[0].startswith(f"✓ {name}: right"), str(fb)


def assert_rejects(name, wrong, answer_forms, words: str = "", listings=(), shows=None,
                   words_anywhere: bool = False):
    """``wrong`` fails; the first line's reason is a sentence (more than 15 characters) that contains
    ``words`` (anywhere in the feedback with ``words_anywhere``); and no form of the answer is in the
    feedback once the exercise's name and the ``listings`` of what any answer may be (the options, "True
    or False") are taken out. ``shows(form, text)``: how to look for a form (default ``form in text``)."""
    fb = check_exercise(name, wrong)
    assert not fb.passed, f"{name}: {wrong!r} accepted"
    reason = fb.lines[0].removeprefix(f"✗ {name}: ")
    assert len(reason) > 15, f"{name}: {wrong!r} -> {reason!r}"
    assert words in (str(fb) if words_anywhere else reason), f"{name}: {wrong!r} -> {fb}"
    text = str(fb).replace(name, "")
    for listing in listings:
        text = text.replace(listing, "")
    for form in answer_forms:
        found = shows(form, text) if shows is not None else form in text
        assert not found, f"{name}: {wrong!r} -> the feedback shows {form!r}:\n{fb}"
    return fb


def text_output(cell) -> str:
    """Everything a saved code cell printed or returned, as one string."""
    return "".join(out.get("text", "") or out.get("data", {}).get("text/plain", "") for out in cell.outputs)


def markdown(nb) -> str:
    """Every markdown cell of a notebook, as one string."""
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def assert_placeholders_say_no_answer_yet(nb, names):
    for name in names:
        placeholder = f'check_exercise("{name}", None)'
        cells = [c for c in nb.cells if c.cell_type == "code" and placeholder in c.source]
        assert len(cells) == 1, name
        assert "no answer yet" in text_output(cells[0]), name
