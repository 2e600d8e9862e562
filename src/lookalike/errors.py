"""Errors that reach the user as one readable line (the CLI prints them without a traceback)."""


class LookalikeError(Exception):
    """Base class: the message says what went wrong and what to do next."""


class ImageError(LookalikeError):
    """An image could not be read; the message is the reason it was skipped."""


class ModelUnavailableError(LookalikeError):
    """The model's weights could not be loaded (unknown name, offline, broken checkpoint)."""


class ModalityError(LookalikeError):
    """A query used a modality the model does not have (text on an image-only model)."""


class IndexUnusableError(LookalikeError):
    """The index is missing, belongs to another folder, or was built with another model."""


class QueryError(LookalikeError):
    """A search query could not be understood."""
