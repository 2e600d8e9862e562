"""lookalike: find similar images by image or by text, on a persistent incremental index.

    import lookalike
    idx = lookalike.open("~/Photos", model="clip")   # creates ~/Photos/.lookalike/ on first use
    idx.update()                                     # embeds only new or changed files
    idx.search(image="query.jpg", k=10)
    idx.search(text="a teddy bear")
    idx.similar(image_id), idx.duplicates(), idx.clusters(k=12), idx.recognize(["a.jpg"], "pets/")
    idx.fused_search(image="query.jpg", labels="names.csv")
    lookalike.compare("a.jpg", "b.jpg", model="efficientnet-lite0")
"""

from importlib.metadata import PackageNotFoundError, version

from lookalike.api import Index, compare, open  # noqa: A004 - `lookalike.open` mirrors the usual verb
from lookalike.errors import LookalikeError
from lookalike.settings import IndexSettings

__all__ = ["Index", "IndexSettings", "LookalikeError", "compare", "open"]
try:
    __version__ = version("lookalike")  # one source: pyproject.toml
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
