"""Notebook 04's exercises and checkers (filled in with the notebook)."""
