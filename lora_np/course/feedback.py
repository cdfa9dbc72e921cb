"""What a checker says: one line per check, ✓ or ✗, and whether everything passed.

>>> fb = Feedback()
>>> fb.ok("y matches")
>>> fb.fail("dA: relative error 0.2 — off by the factor s = 1.5")
>>> print(fb)
✓ y matches
✗ dA: relative error 0.2 — off by the factor s = 1.5
>>> fb.passed
False
"""
from __future__ import annotations

OK, FAIL = "✓", "✗"


class Feedback:
    """The verdict of a checker: ``passed`` (bool) and ``lines`` (one str per check).

    ``print(feedback)`` shows the lines; a notebook cell that ends with a checker call shows them
    too (``__repr__`` is the same text), so ``check_lora_pair(f, b)`` alone in a cell is enough.
    """

    def __init__(self):
        self.lines: list[str] = []
        self._failed = False
        self._checked = False

    @property
    def passed(self) -> bool:
        """True when at least one check ran and none failed."""
        return self._checked and not self._failed

    def ok(self, text: str) -> None:
        """Record a passed check."""
        self._checked = True
        self.lines.append(f"{OK} {text}")

    def fail(self, text: str) -> None:
        """Record a failed check."""
        self._checked = self._failed = True
        self.lines.append(f"{FAIL} {text}")

    def note(self, text: str) -> None:
        """A line that is not a check (a summary, a next step); it does not change ``passed``."""
        self.lines.append(f"  {text}")

    def __str__(self) -> str:
        return "\n".join(self.lines)

    def __repr__(self) -> str:
        return str(self)
