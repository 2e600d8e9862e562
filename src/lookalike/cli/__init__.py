"""The `lookalike` command: one small function per verb, in a module per group of verbs; the work happens in the
library (`lookalike.api`), which the CLI calls like any user of the Python API."""

from lookalike.cli import collection, duplicates, evaluation, indexing, searching  # noqa: F401 - registers the verbs
from lookalike.cli.common import app, main

HELP_ORDER = ("index", "search", "compare", "dupes", "recognize", "cluster", "serve", "calibrate", "info", "models")
app.registered_commands.sort(key=lambda command: HELP_ORDER.index(getattr(command.callback, "__name__", "")))

__all__ = ["app", "main"]
