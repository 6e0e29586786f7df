from django.shortcuts import render
from django.views.decorators.http import require_GET

from pushy import conf
from sample_site.photosession.models import Session


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
