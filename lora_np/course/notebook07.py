"""Notebook 07's exercises and checkers (registered with :func:`lora_np.course.exercises.register`)."""
from __future__ import annotations

from .exercises import register

register({})
