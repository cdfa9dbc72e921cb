"""Notebook 04b's exercises and checkers (filled in with the notebook)."""
