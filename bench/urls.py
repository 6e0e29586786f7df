# The benchmark serves no pages; Django still wants a URLconf.
urlpatterns = []
