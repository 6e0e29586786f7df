"""Middleware of the test site: access rules that live outside the views."""

from django.http import HttpResponseForbidden

STAFF_PREFIX = "/staff/"


class StaffOnlyMiddleware:
    """Everything under /staff/ is for staff users only (403 for the others)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(STAFF_PREFIX) and not request.user.is_staff:
            return HttpResponseForbidden("staff only")
        return self.get_response(request)


class HomegrownSessionMiddleware:
    """A session middleware that is not Django's (a check error, pushy.E014)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)
