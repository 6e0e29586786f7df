"""Views for the tests: each kind of access rule the default authorization must read.

``can_get`` runs them as the subscriber, so each is a case of "what would this
user get for a GET": DRF permission classes, object permissions and filtered
querysets; class-based views with the auth mixins; decorated function views.
"""

import logging
import threading
import time

import redis
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.contrib.auth.mixins import LoginRequiredMixin, PermissionRequiredMixin
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.dispatch import Signal
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils.translation import gettext
from django.views import View
from django.views.generic import TemplateView
from rest_framework import generics, permissions, serializers

from pushy import conf, publisher
from tests.testapp.models import Article, Document, Post, Shot, Unpushed

logger = logging.getLogger(__name__)
# An uncached signal: each send takes its lock (Signal._live_receivers).
noticed = Signal()
noticed.connect(lambda **kwargs: None, weak=False)


def detail(request, **kwargs):
    """Anyone may GET it: subscriptions to its URLs are allowed by default."""
    return JsonResponse(kwargs)


# Function views ---------------------------------------------------------


@login_required
def members_only(request):
    return JsonResponse({"user": request.user.username})


@permission_required("testapp.view_shot")
def shot_viewers(request):
    return JsonResponse({"ok": True})


def not_found(request):
    raise Http404("never here")


def moved(request):
    return HttpResponseRedirect("/api/shot/")


def broken(request):
    raise RuntimeError("the view failed")


def slow(request, n):
    """Takes a while to answer: authorization work that can pile up."""
    time.sleep(0.1)
    return JsonResponse({"n": n})


def sleeps(request, ms):
    """Takes ``ms`` milliseconds, whatever the query string: a slow view that
    many distinct URLs (``?q=1``, ``?q=2``, ...) share."""
    time.sleep(ms / 1000)
    return JsonResponse({"ms": ms})


def shares_locks(request, n):
    """What views do with the locks and sockets a process shares, many times
    over: log (a handler's lock), look up URLs and translations (asgiref's
    Locals), send an uncached signal, use the default cache, ask pushy's Redis
    client (a version, as the live admin does) and the site's own (one client,
    so one connection pool, for the whole process). In the gateway these run in
    pool threads at once (pushy/gateway/locks.py, shared_sockets.py)."""
    for i in range(50):
        logger.info("shares_locks %s: %s", n, i)
        reverse("shot-detail", kwargs={"pk": n})
        gettext("Forbidden")
        noticed.send(sender=None)
        cache.set(f"shares-locks-{n}", i)
        if i % 10 == 0:
            site_redis().incr(f"shares-locks-{n}")
    publisher.get_client().ping()
    return JsonResponse({"n": n})


_site_redis: list[redis.Redis] = []
_site_redis_lock = threading.Lock()


def site_redis() -> redis.Redis:
    """One Redis client for the process, as sites keep one at module level:
    its pooled connections go to whichever thread asks next."""
    with _site_redis_lock:
        if not _site_redis:
            _site_redis.append(redis.Redis.from_url(conf.get("REDIS_URL")))
        return _site_redis[0]


def writes_session(request):
    """Uses the session as views do; the gateway must give it one."""
    return JsonResponse({"visits": request.session.get("visits", 0)})


def guest_order(request, pk):
    """A guest checkout's order: shown to the visitor whose session holds its id."""
    if pk not in request.session.get("guest_orders", []):
        raise Http404("no such order")
    return JsonResponse({"order": pk, "address": "1 Guest Street"})


# Class-based views ------------------------------------------------------


class MembersView(LoginRequiredMixin, View):
    def get(self, request):
        return JsonResponse({"user": request.user.username})


class ShotViewersView(PermissionRequiredMixin, View):
    permission_required = "testapp.view_shot"

    def get(self, request):
        return JsonResponse({"ok": True})


class UnrenderedView(TemplateView):
    """Its template does not exist: rendering would fail, so it must not happen."""

    template_name = "testapp/no-such-template.html"


# Django REST framework --------------------------------------------------


class DocumentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Document
        fields = ["id", "title", "owner"]


class IsOwner(permissions.BasePermission):
    def has_object_permission(self, request, view, obj):
        return obj.owner_id == request.user.pk


class DocumentList(generics.ListAPIView):
    """Logged-in users only; each sees their own documents."""

    serializer_class = DocumentSerializer
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self):
        return Document.objects.filter(owner=self.request.user)


class DocumentDetail(generics.RetrieveAPIView):
    """Any document exists for everyone, but only its owner may read it (403)."""

    queryset = Document.objects.all()
    serializer_class = DocumentSerializer
    permission_classes = [permissions.IsAuthenticated, IsOwner]


class OwnDocumentDetail(generics.RetrieveAPIView):
    """A filtered queryset: another user's document is a 404."""

    serializer_class = DocumentSerializer

    def get_queryset(self):
        return Document.objects.filter(owner_id=self.request.user.pk)


class PublicDocuments(generics.ListAPIView):
    queryset = Document.objects.all()
    serializer_class = DocumentSerializer
    permission_classes = [permissions.AllowAny]


# What the site's own GET sees (issue 21 item 1) -------------------------

# The addresses the office view answers; others get 403.
OFFICE_ADDRESSES = ("127.0.0.2",)


def office_only(request):
    """Restricted by client address, as some intranet pages are."""
    if request.META.get("REMOTE_ADDR") not in OFFICE_ADDRESSES:
        raise PermissionDenied("not from the office")
    return JsonResponse({"address": request.META["REMOTE_ADDR"]})


def shop_only(request):
    """A tenant's page: only on the tenant's host, as a multi-tenant site."""
    if request.get_host() != "shop.example.com":
        raise Http404("no such tenant")
    return JsonResponse({"tenant": "shop"})


def side_effects(request):
    """A GET view that writes (never do this): to the database, a pushed
    model (a publish after commit), the session, a cookie, and reads the
    messages (which consumes them)."""
    Unpushed.objects.create(name="written by a GET")
    with transaction.atomic():
        Shot.objects.create(title="saved by a GET")
    request.session["visits"] = request.session.get("visits", 0) + 1
    seen = [str(message) for message in messages.get_messages(request)]
    response = JsonResponse({"messages": seen})
    response.set_cookie("seen", "yes")
    return response


# Visibility: published, or the author's own -------------------------------


def _visible(model, request):
    return model.objects.filter(Q(published=True) | Q(author_id=request.user.pk))


def post_detail(request, pk):
    post = _visible(Post, request).filter(pk=pk).values("pk", "title").first()
    if post is None:
        raise Http404("no such post")
    return JsonResponse(post)


def post_list(request):
    return JsonResponse({"posts": list(_visible(Post, request).values("pk", "title"))})


def article_detail(request, pk):
    article = _visible(Article, request).filter(pk=pk).values("pk", "title").first()
    if article is None:
        raise Http404("no such article")
    return JsonResponse(article)


def article_list(request):
    return JsonResponse({"count": _visible(Article, request).count()})


# Pages with live blocks (tests/browser/test_visibility.py) -------------------

PAGE = """{% load pushy_tags %}<!doctype html><html><head><title>posts</title>
{% pushy_scripts %}</head><body>{% block body %}{% endblock %}</body></html>"""
POST_LIST_PAGE = PAGE.replace(
    "{% block body %}{% endblock %}",
    '{% pushy_live "/api/post/" tag="ul" id="posts" %}{% for post in posts %}'
    '<li id="post-{{ post.pk }}">{{ post.title }}</li>{% endfor %}{% endpushy_live %}',
)
POST_PAGE = PAGE.replace(
    "{% block body %}{% endblock %}",
    "{% pushy_live post %}<h1>{{ post.title }}</h1>{% endpushy_live %}",
)


def _page(request, template: str, **context):
    from django.http import HttpResponse
    from django.template import engines

    page = engines["django"].from_string(template)
    return HttpResponse(page.render(context, request))


def post_list_page(request):
    return _page(request, POST_LIST_PAGE, posts=_visible(Post, request).order_by("pk"))


def post_page(request, pk):
    post = _visible(Post, request).filter(pk=pk).first()
    if post is None:
        raise Http404("no such post")
    return _page(request, POST_PAGE, post=post)
