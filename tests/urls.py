from django.urls import path

from tests.testapp import views

urlpatterns = [
    path("api/session/<int:pk>/", views.detail, name="session-detail"),
    path("api/session/", views.detail, name="session-list"),
    path("api/shot/<int:pk>/", views.detail, name="shot-detail"),
    path("api/shot/", views.detail, name="shot-list"),
    path("api/note/<slug:slug>/", views.detail, name="note-detail"),
    path("api/note/", views.detail, name="note-list"),
    path("api/tag/<str:name>/", views.detail),
    path("api/doc/<int:pk>/", views.DocumentDetail.as_view(), name="document-detail"),
    path("api/doc/", views.DocumentList.as_view(), name="document-list"),
    path("api/own-doc/<int:pk>/", views.OwnDocumentDetail.as_view()),
    path("api/public-doc/", views.PublicDocuments.as_view()),
    path("api/post/<int:pk>/", views.post_detail, name="post-detail"),
    path("api/post/", views.post_list, name="post-list"),
    path("api/article/<int:pk>/", views.article_detail, name="article-detail"),
    path("api/article/", views.article_list, name="article-list"),
    path("pages/posts/", views.post_list_page),
    path("pages/post/<int:pk>/", views.post_page),
    path("fn/members/", views.members_only),
    path("fn/shot-viewers/", views.shot_viewers),
    path("fn/not-found/", views.not_found),
    path("fn/moved/", views.moved),
    path("fn/broken/", views.broken),
    path("fn/session/", views.writes_session),
    path("fn/slow/<int:n>/", views.slow),
    path("fn/guest-order/<int:pk>/", views.guest_order),
    path("cbv/members/", views.MembersView.as_view()),
    path("cbv/shot-viewers/", views.ShotViewersView.as_view()),
    path("cbv/unrendered/", views.UnrenderedView.as_view()),
]
