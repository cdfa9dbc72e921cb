"""Notebook 03's exercises and checkers (filled in with the notebook)."""
