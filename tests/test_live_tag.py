"""``{% pushy_live %}``: the wrapper element pushy.js keeps live, rendered by
Django's template engine (pushy.js's side: tests/browser/test_declarative.py)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.template import Context, Template, TemplateSyntaxError

from pushy.templatetags import pushy_tags
from tests.testapp.models import Note, Shot

pytestmark = pytest.mark.timeout(30)


class Elements(HTMLParser):
    """Start tags in order, as (tag, attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


def render(source: str, **context) -> str:
    return Template("{% load pushy_tags %}" + source).render(Context(context))


def elements(source: str, **context) -> list[tuple[str, dict]]:
    """The start tags rendered, but for the client's script (tested apart)."""
    parser = Elements()
    parser.feed(render(source, **context))
    return [(tag, attributes) for tag, attributes in parser.found if tag != "script"]


def scripts(html: str) -> list[dict]:
    parser = Elements()
    parser.feed(html)
    return [attributes for tag, attributes in parser.found if tag == "script"]


@pytest.fixture
def no_version(monkeypatch):
    monkeypatch.setattr(pushy_tags, "current_version", lambda: None)


def test_an_instance_gets_its_api_url_an_id_and_a_refresh(no_version):
    html = render("{% pushy_live shot %}<b>{{ shot.title }}</b>{% endpushy_live %}",
                  shot=Shot(pk=3, title="Dawn"))  # fmt: skip
    assert html.split("</script>", 1)[1] == (
        '<div id="pushy-testapp-shot-3" data-pushy-url="/api/shot/3/" '
        "data-pushy-object data-pushy-refresh><b>Dawn</b></div>"
    )


def test_a_url_string_is_a_collection_with_an_id_from_its_words(no_version):
    [(tag, attributes), _] = elements(
        '{% pushy_live url tag="tbody" %}<tr></tr>{% endpushy_live %}',
        url="/api/shot/?session=2",
    )
    assert tag == "tbody"
    assert attributes == {
        "id": "pushy-api-shot-session-2",
        "data-pushy-url": "/api/shot/?session=2",
        "data-pushy-refresh": None,
    }


def test_options_id_refresh_url_and_other_attributes(no_version):
    [(tag, attributes)] = elements(
        '{% pushy_live shot tag="tr" id="row-1" refresh=row_url class="row" '
        'hx_swap="outerHTML" hidden=False %}{% endpushy_live %}',
        shot=Shot(pk=1),
        row_url="/rows/1/",
    )
    assert tag == "tr"
    assert attributes == {
        "id": "row-1",
        "data-pushy-url": "/api/shot/1/",
        "data-pushy-object": None,
        "data-pushy-refresh": "/rows/1/",
        "class": "row",
        "hx-swap": "outerHTML",
    }


def test_an_instance_says_it_is_one_object_a_list_does_not(no_version):
    """data-pushy-object: pushy.js subscribes with "object": true (on a Redis
    Cluster, one channel instead of 13), only where the URL is one object's."""
    source = "{% pushy_live target %}{% endpushy_live %}"
    [(_, one)] = elements(source, target=Shot(pk=1))
    [(_, listed)] = elements(source, target=Shot.objects.none())
    [(_, string)] = elements(source, target="/api/shot/1/")
    assert "data-pushy-object" in one
    assert "data-pushy-object" not in listed and "data-pushy-object" not in string
    # Said explicitly: an instance whose URL is also a list, a URL string.
    [(_, no)] = elements(
        "{% pushy_live target object=False %}{% endpushy_live %}", target=Shot(pk=1)
    )
    [(_, yes)] = elements(
        "{% pushy_live '/api/shot/1/' object=True %}{% endpushy_live %}"
    )
    assert "data-pushy-object" not in no and "data-pushy-object" in yes
    with pytest.raises(TemplateSyntaxError, match="query string"):
        render("{% pushy_live '/api/shot/?s=1' object=True %}{% endpushy_live %}")


def test_refresh_false_leaves_only_the_subscription(no_version):
    [(_, attributes)] = elements(
        "{% pushy_live shot refresh=False %}{% endpushy_live %}", shot=Shot(pk=1)
    )
    assert "data-pushy-refresh" not in attributes
    assert attributes["data-pushy-url"] == "/api/shot/1/"


def test_attributes_are_escaped(no_version):
    hostile = '"><script>alert(1)</script>'
    html = render(
        "{% pushy_live url id=hostile refresh=hostile title=hostile %}"
        "{% endpushy_live %}",
        url=hostile,
        hostile=hostile,
    )
    assert "<script>" not in html
    [(_, attributes)] = elements(
        "{% pushy_live url id=hostile refresh=hostile %}{% endpushy_live %}",
        url=hostile,
        hostile=hostile,
    )
    assert attributes["data-pushy-url"] == hostile
    assert attributes["data-pushy-refresh"] == hostile
    assert attributes["id"] == hostile


def test_a_primary_key_with_odd_characters_makes_a_usable_id(no_version):
    [(_, attributes)] = elements(
        "{% pushy_live note %}{% endpushy_live %}", note=Note(slug='a b"c')
    )
    assert attributes["id"] == "pushy-testapp-note-a-b-c"


def test_the_body_is_rendered_with_the_context(no_version):
    html = render(
        "{% pushy_live '/api/shot/' %}{% for s in shots %}{{ s }};{% endfor %}"
        "{% endpushy_live %}",
        shots=["<a>", "b"],
    )
    assert ">&lt;a&gt;;b;</div>" in html


@pytest.mark.parametrize(
    "source, message",
    [
        ("{% pushy_live %}{% endpushy_live %}", "a QuerySet or a URL"),
        ("{% pushy_live url 3 %}{% endpushy_live %}", "keyword options"),
        ('{% pushy_live url tag="img" %}{% endpushy_live %}', "void element"),
        ('{% pushy_live url tag="a b" %}{% endpushy_live %}', "not a tag name"),
        ("{% pushy_live nothing %}{% endpushy_live %}", "URL is empty"),
        ("{% pushy_live 3 %}{% endpushy_live %}", "a model class or a URL string"),
        ('{% pushy_live "" %}{% endpushy_live %}', "URL is empty"),
        ("{% pushy_live url %}", "endpushy_live"),
    ],
)
def test_mistakes_are_template_syntax_errors(no_version, source, message):
    with pytest.raises(TemplateSyntaxError, match=re.escape(message)):
        render(source, url="/api/shot/")


def test_a_get_api_url_that_is_not_a_string_is_named(no_version, monkeypatch):
    monkeypatch.setattr(Shot, "get_api_url", lambda self: None)
    with pytest.raises(TemplateSyntaxError, match=r"testapp.shot.get_api_url\(\)"):
        render("{% pushy_live shot %}{% endpushy_live %}", shot=Shot(pk=1))


def test_carries_the_version_read_once_per_rendering(monkeypatch):
    calls = []

    def version():
        calls.append(1)
        return 1764547200123456

    monkeypatch.setattr(pushy_tags, "current_version", version)
    found = elements(
        "{% for shot in shots %}{% pushy_live shot %}{% endpushy_live %}{% endfor %}",
        shots=[Shot(pk=1), Shot(pk=2), Shot(pk=3)],
    )
    assert [a["data-pushy-version"] for _, a in found] == ["1764547200123456"] * 3
    assert calls == [1]


def test_the_version_comes_from_redis_and_is_0_without_it(settings):
    [(_, attributes)] = elements("{% pushy_live '/x/' %}{% endpushy_live %}")
    assert int(attributes["data-pushy-version"]) > 0
    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    [(_, attributes)] = elements("{% pushy_live '/x/' %}{% endpushy_live %}")
    # Below every epoch: the element resyncs (refreshes) once it subscribes.
    assert attributes["data-pushy-version"] == "0"


@pytest.mark.django_db
def test_a_queryset_or_a_model_subscribes_to_its_collection_none_included(
    no_version,
):
    from tests.testapp.models import Product

    source = "{% pushy_live products tag='ul' %}{% endpushy_live %}"
    for products in (Product.objects.all(), Product):
        [(tag, attributes)] = elements(source, products=products)
        assert tag == "ul"
        assert attributes["data-pushy-url"] == "/products/"
        assert attributes["id"] == "pushy-products"


@pytest.mark.django_db
def test_a_list_whose_collection_cannot_be_told_says_what_to_add(no_version):
    from tests.testapp.models import NoUrl

    with pytest.raises(TemplateSyntaxError, match="add a get_api_list_url"):
        render("{% pushy_live rows %}{% endpushy_live %}", rows=NoUrl.objects.all())


@pytest.mark.django_db
def test_an_instance_without_get_api_url_uses_its_absolute_url(no_version):
    from tests.testapp.models import Product

    [(_, attributes)] = elements(
        "{% pushy_live product %}{% endpushy_live %}", product=Product(pk=4)
    )
    assert attributes["data-pushy-url"] == "/products/4/"
    assert attributes["id"] == "pushy-testapp-product-4"


def test_the_first_block_of_a_page_loads_the_client_once(no_version):
    block = "{% pushy_live url %}{% endpushy_live %}"
    html = render(block + block, url="/api/shot/")
    [script] = scripts(html)
    assert script["src"] == "/static/pushy/js/pushy.js"
    assert "defer" in script and "data-pushy-autostart" in script
    assert html.index("<script") < html.index("<div")


def test_pushy_scripts_first_means_no_second_client(no_version):
    html = render(
        "{% pushy_scripts %}{% pushy_live url %}{% endpushy_live %}", url="/api/shot/"
    )
    [script] = scripts(html)
    assert "defer" not in script


def test_included_templates_share_the_one_client(no_version, settings):
    from django.template import engines

    engine = engines["django"].engine
    settings.TEMPLATES = settings.TEMPLATES  # keep the engine's loaders
    block = engine.from_string(
        "{% load pushy_tags %}{% pushy_live url %}{% endpushy_live %}"
    )
    page = engine.from_string("{% include block %}{% include block %}")
    html = page.render(Context({"block": block, "url": "/api/shot/"}))
    assert len(scripts(html)) == 1
    assert html.count("<div") == 2


def test_a_csp_nonce_reaches_the_script_the_block_adds(no_version):
    html = render("{% pushy_live url %}{% endpushy_live %}", url="/a/", csp_nonce="n1")
    assert scripts(html)[0]["nonce"] == "n1"


def test_pushy_presence_renders_an_element_that_joins_its_target(no_version):
    html = render(
        '{% pushy_presence shot class="viewers" %}{% pushy_presence path tag="b" %}',
        shot=Shot(pk=3, title="x"),
        path="/shots/3/",
    )
    parser = Elements()
    parser.feed(html)
    found = [(tag, attrs) for tag, attrs in parser.found if tag != "script"]
    assert found == [
        ("span", {"data-pushy-presence": "/api/shot/3/", "class": "viewers"}),
        ("b", {"data-pushy-presence": "/shots/3/"}),
    ]
    # The client comes once, with the first of a page's tags.
    assert len(scripts(html)) == 1


def test_pushy_presence_refuses_what_names_no_url():
    with pytest.raises(TemplateSyntaxError):
        render("{% pushy_presence missing %}")
    with pytest.raises(TemplateSyntaxError):
        render('{% pushy_presence "/x/" tag="br" %}')
