"""Synthetic, seeded data sets: fruit features, fruit images, and fruit-shop text in several styles."""
from .fruit import (
    FEATURES,
    FRUITS,
    GRAPE,
    PROTOTYPES,
    RAISIN,
    FruitTask,
    make_fruit_task,
    sample_fruit,
    shift_matrix,
)
from .images import ImageTask, image_grid, make_fruit_images, make_image_task
from .text import STYLES, CharVocab, generate_text, make_text_dataset, style_markers

__all__ = ["FRUITS", "FEATURES", "GRAPE", "RAISIN", "PROTOTYPES", "FruitTask", "make_fruit_task",
           "sample_fruit", "shift_matrix", "ImageTask", "make_image_task", "make_fruit_images", "image_grid",
           "STYLES", "CharVocab", "generate_text", "make_text_dataset", "style_markers"]
