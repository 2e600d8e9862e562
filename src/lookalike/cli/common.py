"""What every `lookalike` verb shares: the Typer app, consoles, common options, safe printing, the entry point."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from lookalike.errors import LookalikeError
from lookalike.models.specs import models_help
from lookalike.names import display

app = typer.Typer(
    help="Find similar images: index a folder, then search by image or text, compare, and more.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)

DbOption = Annotated[
    Path | None,
    typer.Option("--db", help="The index: a .db file or a folder holding index.db. "
                 "Default: PHOTOS_DIR/.lookalike, found from the current folder upwards like .git."),
]
ModelOption = Annotated[
    str | None,
    typer.Option("--model", "-m", help=f"{models_help()}; or a Hugging Face id or a local checkpoint folder. "
                 "`index` takes several: --model clip,sscd (text/semantic search by the first, dupes and copy "
                 "lookups by the copy model)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (JSON Lines for several queries).")]


def shown(text: object) -> str:
    """A name or message for the terminal: escape codes and undecodable bytes escaped, Rich markup inert."""
    return escape(display(str(text)))


def json_line(payload: object) -> str:
    """JSON for stdout. A file name that is not UTF-8 travels as \\udcNN escapes (json.loads gives back the same
    name), so the output is valid UTF-8 and lossless."""
    text = json.dumps(payload, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(payload)
    return text


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"lookalike {version('lookalike')}")
        except PackageNotFoundError:
            print("lookalike (not installed: running from a source tree)")
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    pass


def main() -> None:
    try:
        app()
    except LookalikeError as exc:
        errors.print(f"[bold red]error:[/] {shown(exc)}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        errors.print("interrupted: everything committed so far is kept; run the command again to finish")
        sys.exit(130)


def embedder_for(model: str | None, db: Path | None):
    """--model, else the model of the index found (or named by --db), else the default model."""
    from lookalike.api import Index, find_index
    from lookalike.models.registry import DEFAULT_MODEL, load_embedder

    if model is None and (db or find_index()) is not None:
        with Index.open(db=db, create=False) as idx:
            model = idx.model_id
    return load_embedder(model or DEFAULT_MODEL)
