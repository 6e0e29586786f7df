from django.http import JsonResponse


def detail(request, pk=None):
    return JsonResponse({"pk": pk})
