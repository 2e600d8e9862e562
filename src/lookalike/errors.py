"""Errors that reach the user as one readable line (the CLI prints them without a traceback).

Each carries the HTTP status the server answers it with, so no handler guesses from the message.
"""


class LookalikeError(Exception):
    """Base class: the message says what went wrong and what to do next."""

    http_status = 400


class ImageError(LookalikeError):
    """An image could not be read; the message is the reason it was skipped."""

    http_status = 415


class ImageTooLargeError(ImageError):
    """An image (or an upload) over a size or pixel limit."""

    http_status = 413


class ModelUnavailableError(LookalikeError):
    """The model's weights could not be loaded (unknown name, offline, broken checkpoint)."""

    http_status = 503


class ModalityError(LookalikeError):
    """A query used a modality the model does not have (text on an image-only model)."""

    http_status = 422


class IndexUnusableError(LookalikeError):
    """The index is missing, belongs to another folder, or was built with another model."""

    http_status = 409


class QueryError(LookalikeError):
    """A search query could not be understood."""

    http_status = 422


class NotFoundError(LookalikeError):
    """Something named by id or path is not in the index."""

    http_status = 404
