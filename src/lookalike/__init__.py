"""lookalike: find similar images by image or by text, on a persistent incremental index.

    import lookalike
    idx = lookalike.open("~/Photos", model="clip")   # creates ~/Photos/.lookalike/ on first use
    idx.update()                                     # embeds only new or changed files
    idx.search(image="query.jpg", k=10)
    idx.search(text="a teddy bear")
    lookalike.compare("a.jpg", "b.jpg", model="efficientnet-lite0")
"""

from lookalike.api import Index, compare, open  # noqa: A004 - `lookalike.open` mirrors the usual verb
from lookalike.errors import LookalikeError

__all__ = ["Index", "LookalikeError", "compare", "open"]
__version__ = "0.1.0"
