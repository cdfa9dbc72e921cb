"""Notebook 08's exercises and checkers (filled in with the notebook)."""
