"""Built-in submissions: each `NAME.py` (or `NAME/submission.py`) is loaded by name, not imported here."""
