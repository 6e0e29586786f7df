"""One GET through the site, as Django's handler would serve it, leaving no trace.

The default authorization (``pushy.authorization.can_get``) asks the site
itself: the request goes through the project's ``MIDDLEWARE`` and the URL's
view, as a browser's GET would, and only the answer's status is kept. So
``LoginRequiredMiddleware``, an access middleware of the project's own or a
third party's, tenants chosen by host and anything else the stack does count.

What differs from Django's ``WSGIHandler`` (docs/settings.md, "Authorization"):

- Django's cache middleware (``UpdateCacheMiddleware``,
  ``FetchFromCacheMiddleware``, ``CacheMiddleware``) is left out of the chain:
  the answer must be the view's own, and nothing may be stored.
- Every ``SessionMiddleware`` of the chain hands the request the read-only
  session the gateway prepared (``pushy.sessions``), never one that saves.
- An exception becomes a bare response of the status Django would give it
  (404, 403, 400, 500), without the project's error views or Django's
  ``django.request`` log lines: a refused subscribe is not a site error.
- ``request_started``/``request_finished`` are not sent (the gateway's pool
  closes database connections itself after each job), and the response is
  never sent anywhere or closed.
- All of it runs in a transaction on each database that is rolled back
  (``rolled_back()``), so a view or middleware that writes leaves nothing,
  and ``on_commit`` hooks (pushy's own publishes among them) never run.

Nothing here imports gevent: this runs in the gateway's pool threads.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.exceptions import (
    BadRequest,
    ImproperlyConfigured,
    MiddlewareNotUsed,
    PermissionDenied,
    SuspiciousOperation,
)
from django.core.handlers.base import BaseHandler
from django.core.handlers.wsgi import WSGIRequest, get_script_name
from django.core.signals import setting_changed
from django.db import DatabaseError, connections, transaction
from django.db.backends.signals import connection_created
from django.http import (
    Http404,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
    HttpResponseNotFound,
    HttpResponseServerError,
)
from django.middleware.cache import FetchFromCacheMiddleware, UpdateCacheMiddleware
from django.urls import set_script_prefix, set_urlconf
from django.utils import translation
from django.utils.module_loading import import_string

__all__ = ["CACHE_MIDDLEWARE", "SESSION_ENVIRON_KEY", "get", "middleware_paths"]

logger = logging.getLogger(__name__)

# Left out of the chain, with their subclasses: they answer from, or store
# into, the site's cache (CacheMiddleware is both).
CACHE_MIDDLEWARE = (UpdateCacheMiddleware, FetchFromCacheMiddleware)
# Where the request carries the read-only session its SessionMiddleware sets.
SESSION_ENVIRON_KEY = "pushy.session"
# Where a request keeps the exception its view or middleware raised, if any.
EXCEPTION_ENVIRON_KEY = "pushy.exception"


def middleware_paths() -> list[str]:
    """``settings.MIDDLEWARE`` as the authorization GET runs it."""
    return [path for path in settings.MIDDLEWARE if not is_cache_middleware(path)]


def is_cache_middleware(path: str) -> bool:
    factory = import_string(path)
    return isinstance(factory, type) and issubclass(factory, CACHE_MIDDLEWARE)


def get(request: WSGIRequest) -> HttpResponse:
    """``request`` through the site's middleware and view; nothing it does stays.

    Never raises for what the view or a middleware raises: that is a response
    of the status Django would answer with (``pushy.exception`` in the
    request's environ says which exception).
    """
    set_urlconf(settings.ROOT_URLCONF)
    set_script_prefix(get_script_name(request.environ))
    try:
        with rolled_back():
            return handler().answer(request)
    finally:
        set_urlconf(None)
        translation.deactivate()  # LocaleMiddleware's choice is this request's


@contextlib.contextmanager
def rolled_back() -> Iterator[None]:
    """A transaction on each database the question uses, rolled back at the end.

    Connections this thread has open get theirs now; one that opens during the
    question gets it as it connects (``connection_created``), before any query
    of the question runs there, and before a block of the view's own
    ``atomic()`` begins (that block becomes a savepoint inside it). So every
    write is undone, ``on_commit`` hooks never run, and a database the
    question never touches is not connected to.
    """
    question = _Question()
    with question.stack:
        for connection in connections.all(initialized_only=True):
            if connection.connection is not None:
                question.enter(connection.alias)
        _current.question = question
        try:
            yield
        finally:
            _current.question = None
            question.roll_back()


class _Question:
    """The transactions one question has entered, one per database alias."""

    def __init__(self) -> None:
        self.stack = contextlib.ExitStack()
        self.entered: list[str] = []

    def enter(self, alias: str) -> None:
        atomic = transaction.Atomic(alias, savepoint=True, durable=False)
        # As TestCase marks its own: a durable block of the view's runs inside.
        atomic._from_testcase = True
        try:
            self.stack.enter_context(atomic)
        except DatabaseError:
            # Its queries will fail too, and a failing view means no.
            logger.warning("no transaction on database %r", alias, exc_info=True)
            return
        self.entered.append(alias)

    def roll_back(self) -> None:
        for alias in self.entered:
            transaction.set_rollback(True, using=alias)


_current = threading.local()


def _enter_on_connect(sender: Any, connection: Any, **kwargs: Any) -> None:
    question = getattr(_current, "question", None)
    if question is not None and connection.alias not in question.entered:
        question.enter(connection.alias)


connection_created.connect(_enter_on_connect, dispatch_uid="pushy.site_get.connect")


class SiteHandler(BaseHandler):
    """The project's middleware chain, built once per process (``handler()``)."""

    def __init__(self) -> None:
        self.load_middleware()

    def answer(self, request: WSGIRequest) -> HttpResponse:
        return self._middleware_chain(request)

    def load_middleware(self, is_async: bool = False) -> None:
        """Like ``BaseHandler.load_middleware`` (synchronous), from
        ``middleware_paths()``, with ``answering()`` around each layer."""
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = answering(self._get_response)
        for path in reversed(middleware_paths()):
            try:
                instance, layer = self._make(path, handler)
            except MiddlewareNotUsed:
                continue
            if isinstance(instance, SessionMiddleware):
                _hand_out_read_only_sessions(instance)
            self._collect_hooks(instance)
            handler = answering(layer)
        self._middleware_chain = handler

    def _make(self, path: str, handler: Callable) -> tuple[Any, Callable]:
        """The middleware ``path`` around ``handler``, and the layer to call
        (an async-only middleware gets an async handler and is called through
        ``async_to_sync``, as Django adapts it)."""
        factory = import_string(path)
        if getattr(factory, "sync_capable", True):
            instance = layer = factory(handler)
        else:
            instance = factory(self.adapt_method_mode(True, handler, False))
            layer = self.adapt_method_mode(False, instance, True)
        if instance is None:
            raise ImproperlyConfigured(f"Middleware factory {path} returned None.")
        return instance, layer

    def _collect_hooks(self, instance: Any) -> None:
        if hasattr(instance, "process_view"):
            self._view_middleware.insert(
                0, self.adapt_method_mode(False, instance.process_view)
            )
        if hasattr(instance, "process_template_response"):
            self._template_response_middleware.append(
                self.adapt_method_mode(False, instance.process_template_response)
            )
        if hasattr(instance, "process_exception"):
            self._exception_middleware.append(
                self.adapt_method_mode(False, instance.process_exception)
            )


def answering(get_response: Callable) -> Callable:
    """``get_response`` with what it raises turned into a response, as Django's
    ``convert_exception_to_response`` does, minus error views and logging."""

    @functools.wraps(get_response)
    def inner(request: WSGIRequest) -> HttpResponse:
        try:
            return get_response(request)
        except Exception as e:
            request.environ.setdefault(EXCEPTION_ENVIRON_KEY, e)
            return _response_for(request, e)

    return inner


def _response_for(request: WSGIRequest, error: Exception) -> HttpResponse:
    if isinstance(error, Http404):
        return HttpResponseNotFound()
    if isinstance(error, PermissionDenied):
        return HttpResponseForbidden()
    if isinstance(error, (BadRequest, SuspiciousOperation)):
        return HttpResponseBadRequest()
    logger.warning(
        "the view of %s failed: refusing", request.get_full_path(), exc_info=error
    )
    return HttpResponseServerError()


def _hand_out_read_only_sessions(middleware: SessionMiddleware) -> None:
    """Make ``middleware`` set the request's prepared read-only session.

    Its own ``process_request`` runs first (a subclass may do more than make
    the store); then the store is replaced. Its ``process_response`` runs as
    usual: saving does nothing, and the cookie it may set goes nowhere.
    """
    own = middleware.process_request

    def process_request(request: WSGIRequest) -> Any:
        answer = own(request)
        request.session = request.environ[SESSION_ENVIRON_KEY]
        return answer

    middleware.process_request = process_request  # type: ignore[method-assign]


@functools.cache
def handler() -> SiteHandler:
    """The process's chain; built again when a setting changes (tests)."""
    return SiteHandler()


def _forget_handler(**kwargs: Any) -> None:
    handler.cache_clear()


setting_changed.connect(_forget_handler, dispatch_uid="pushy.site_get.handler")
