"""Errors raised by pushy."""


class PushyError(Exception):
    """Base class of every error pushy raises on purpose."""


class ModelNotConfigured(PushyError, LookupError):
    """Raised when an update is asked for a model that is not in ``MODELS``."""


class PublishError(PushyError, ConnectionError):
    """Raised when Redis cannot be reached or refuses a publish.

    The signal path never lets it escape into the user's save; the explicit
    publishing helpers (``pushy_test_broadcast``) raise it so callers can report it.
    """


class InvalidUpdate(PushyError, ValueError):
    """Raised when an update cannot be published as it is.

    A model method returned something of the wrong type (``get_api_url()`` or
    ``get_api_list_url()`` not a string, ``get_pushy_data()`` not a dict of JSON
    values, NaN and Infinity included), or the encoded update is larger than
    ``MAX_UPDATE_BYTES``. The message names the model and the method at fault.
    ``notify``, ``notify_many`` and ``broadcast`` raise it; the signal receivers
    log it instead, so a save never fails because of pushy.
    """
