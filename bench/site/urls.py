"""The item API, for ``python -m bench.authz``: the views pushy's default
authorization runs (signed-in users only, one query each, as a typical API)."""

from django.http import Http404, JsonResponse
from django.urls import path

from bench.site.benchapp.models import Item


def _forbidden() -> JsonResponse:
    return JsonResponse({"detail": "sign in"}, status=403)


def item_list(request):
    if not request.user.is_authenticated:
        return _forbidden()
    return JsonResponse({"count": Item.objects.count()})


def item_detail(request, pk):
    if not request.user.is_authenticated:
        return _forbidden()
    visible = Item.objects.filter(pk=pk, hidden=False, level__lte=10)
    item = visible.values("pk", "title").first()
    if item is None:
        raise Http404
    return JsonResponse(item)


urlpatterns = [
    path("api/item/", item_list),
    path("api/item/<int:pk>/", item_detail),
]
