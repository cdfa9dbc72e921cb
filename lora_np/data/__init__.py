"""Synthetic, seeded data sets: the fruit task."""
from .fruit import FEATURES, FRUITS, GRAPE, PROTOTYPES, RAISIN, FruitTask, make_fruit_task, sample_fruit, shift_matrix

__all__ = ["FRUITS", "FEATURES", "GRAPE", "RAISIN", "PROTOTYPES", "FruitTask", "make_fruit_task",
           "sample_fruit", "shift_matrix"]
