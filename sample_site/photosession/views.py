from django import forms
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from pushy import conf
from sample_site.photosession.models import Session, Shot


def content_security_policy() -> str:
    """A strict policy: no inline script or style; sockets only to the gateway."""
    gateway = conf.websocket_url()
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src 'self' {gateway}; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


@require_GET
def sessions(request):
    """Every session with its shots; static/photosession/live.js keeps it live."""
    context = {"sessions": Session.objects.prefetch_related("shots")}
    response = render(request, "photosession/sessions.html", context)
    response["Content-Security-Policy"] = content_security_policy()
    return response


@require_http_methods(["GET", "POST"])
def nojs(request):
    """The same live data with {% pushy_live %} only; its form adds a shot.

    No script of its own: pushy.js refreshes each pushy_live block from this
    view. The form posts here (POST, redirect, GET), as pages did before
    JavaScript.
    """
    if request.method == "POST":
        form = ShotForm(request.POST)
        if form.is_valid():
            form.save()
        return redirect("nojs")
    context = {
        "sessions": Session.objects.prefetch_related("shots"),
        "session_list_url": reverse("session-list"),
        "shot_list_url": reverse("shot-list"),
    }
    return _strict(render(request, "photosession/nojs.html", context))


@require_GET
def htmx(request):
    """Shots in a table kept live by htmx: pushy's events are its triggers."""
    return _strict(render(request, "photosession/htmx.html", _rows()))


@require_GET
def htmx_rows(request):
    """The table body, fetched by htmx when a shot is created or deleted."""
    return render(request, "photosession/htmx_rows.html", _rows())


@require_GET
def htmx_row(request, pk: int):
    """One row, fetched by htmx when its shot changed."""
    shot = get_object_or_404(Shot.objects.select_related("session"), pk=pk)
    return render(request, "photosession/htmx_row.html", {"shot": shot})


class ShotForm(forms.ModelForm):
    class Meta:
        model = Shot
        fields = ["session", "title"]


def _rows() -> dict:
    return {"shots": Shot.objects.select_related("session")}


def _strict(response):
    response["Content-Security-Policy"] = content_security_policy()
    return response
