"""The course's checkers and solutions, for the notebooks' *your turn* cells and exercises.

* :func:`check_lora_pair` — checks a learner's ``lora_forward`` / ``lora_backward`` (notebook 02)
  against the library and against central differences of their own forward, naming the mistake;
* :func:`check_exercise` — right or wrong, and why, for a named exercise of :data:`EXERCISES`,
  without giving the answer away;
* :func:`show_solution` — prints a worked solution: ``"lora_pair"`` or an exercise's name;
* :func:`lora_forward`, :func:`lora_backward` — the reference pair (plain NumPy, no dropout).

Every checker returns a :class:`Feedback` (``passed``, ``lines``; printing shows one ✓/✗ line per check).
"""
from . import (  # each registers its exercises
    notebook00,
    notebook01,
    notebook02,
    notebook03,
    notebook04,
    notebook04b,
    notebook05,
    notebook06,
    notebook07,
    notebook08,
    notebook09,
)
from .exercises import EXERCISES, Exercise, check_exercise, exercise
from .feedback import Feedback
from .pair import check_lora_pair
from .solutions import lora_backward, lora_forward, show_solution

__all__ = ["check_lora_pair", "check_exercise", "show_solution", "lora_forward", "lora_backward",
           "Feedback", "Exercise", "EXERCISES", "exercise",
           "notebook00", "notebook01", "notebook02", "notebook03", "notebook04", "notebook04b", "notebook05",
           "notebook06", "notebook07", "notebook08", "notebook09"]
