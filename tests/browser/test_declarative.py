"""Declarative subscriptions and refresh in pushy.js, in Chromium.

A scripted WebSocket (test_client_logic.FAKE_WEBSOCKET) stands in for the
gateway, and Playwright serves the pages of an origin of our own
(``http://pushy.test``), so that refresh fetches are real requests the test
answers and counts. The end-to-end version, against runpushy and the sample
site, is test_live_pages.py.
"""

from __future__ import annotations

import pytest

from tests.browser.test_client_logic import FAKE_WEBSOCKET, PUSHY_JS

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]

ORIGIN = "http://pushy.test"

SETUP = """
window.app = new PushyApp;
app.socket_url = "ws://gateway.test/ws";
app.resync_window = 0; app.release_delay = 0; app.refresh_delay = 0.05;
window.events = [];
for (const kind of ["update", "delete", "resync", "refreshed"]) {
  document.addEventListener("pushy:" + kind, (e) => events.push(
    [kind, e.target.id, e.detail.url || e.detail.id]));
}
window.errors = [];
app.on_error((e) => errors.push([e.code, e.message]));
app.init(); last().open();
window.sent = () => last().sent.filter((m) => m.action !== "ping")
  .map((m) => [m.action, m.url]);
window.update = (url, event, extra) => last().receive(Object.assign(
  {type: "update", url, event: event || "update", model: "m.m", pk: 1}, extra || {}));
window.frame = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
"""


TWO = '<p id="a" data-pushy-url="/x/1/"></p><p id="b" data-pushy-url="/x/1/"></p>'


class Site:
    """The pages of ``http://pushy.test``: path -> (status, html); fetches counted."""

    def __init__(self, page) -> None:
        self.page = page
        self.pages: dict[str, tuple[int, str]] = {}
        self.fetches: list[str] = []
        page.route(f"{ORIGIN}/**", self._answer)
        page.add_init_script(FAKE_WEBSOCKET)

    def _answer(self, route) -> None:
        path = route.request.url[len(ORIGIN) :]
        if path == "/pushy.js":
            route.fulfill(path=str(PUSHY_JS), content_type="text/javascript")
            return
        if route.request.resource_type == "fetch":
            self.fetches.append(path)
        status, html = self.pages.get(path, (404, "not found"))
        route.fulfill(status=status, body=html, content_type="text/html")

    def open(self, body: str, path: str = "/page") -> None:
        self.pages[path] = (200, page_html(body))
        self.page.goto(ORIGIN + path)
        self.page.evaluate(SETUP)


def page_html(body: str) -> str:
    return (
        '<!doctype html><html><head><script src="/pushy.js"></script></head>'
        f"<body>{body}</body></html>"
    )


@pytest.fixture
def site(page):
    return Site(page)


def sent(page) -> list:
    return page.evaluate("sent()")


def wait_for(page, expression: str) -> None:
    page.wait_for_function(expression, timeout=5_000)


def test_elements_present_and_added_later_are_subscribed_once_per_url(site):
    site.open(TWO)
    assert sent(site.page) == [["subscribe", "/x/1/"]]
    site.page.evaluate(
        """() => {
        const box = document.createElement("div");
        box.innerHTML = '<span id="c" data-pushy-url="/x/2/"></span>'
          + '<span id="d" data-pushy-url="/x/1/"></span>';
        document.body.append(box);
        for (let i = 0; i < 2000; i++) {
          const p = document.createElement("p");
          p.dataset.pushyUrl = "/x/3/";
          document.body.append(p);
        }
    }"""
    )
    wait_for(site.page, "sent().length === 3")
    assert sent(site.page) == [
        ["subscribe", "/x/1/"],
        ["subscribe", "/x/2/"],
        ["subscribe", "/x/3/"],
    ]


def test_removed_elements_are_unsubscribed_after_the_last_one_goes(site):
    site.open(TWO)
    site.page.evaluate("document.getElementById('a').remove()")
    site.page.evaluate("frame()")
    assert sent(site.page) == [["subscribe", "/x/1/"]]
    site.page.evaluate("document.getElementById('b').remove()")
    wait_for(site.page, "sent().length === 2")
    assert sent(site.page)[-1] == ["unsubscribe", "/x/1/"]


def test_moving_or_swapping_an_element_within_a_task_costs_nothing(site):
    site.open(
        '<div id="one"><p id="a" data-pushy-url="/x/1/"></p></div><div id="two"></div>'
    )
    site.page.evaluate(
        """() => {
        const a = document.getElementById("a");
        for (let i = 0; i < 100; i++) {
          a.remove();
          document.getElementById(i % 2 ? "one" : "two").append(a);
        }
        // htmx's outerHTML swap: the old element out, an equal one in.
        const fresh = document.createElement("p");
        fresh.id = "a2"; fresh.dataset.pushyUrl = "/x/1/";
        a.replaceWith(fresh);
    }"""
    )
    site.page.evaluate("frame()")
    site.page.evaluate("new Promise((r) => setTimeout(r, 50))")
    assert sent(site.page) == [["subscribe", "/x/1/"]]
    site.page.evaluate("update('/x/1/')")
    wait_for(site.page, "events.length === 1")
    assert site.page.evaluate("events") == [["update", "a2", "/x/1/"]]


def test_a_changed_url_attribute_moves_the_subscription(site):
    site.open('<p id="a" data-pushy-url="/x/1/"></p>')
    site.page.evaluate("document.getElementById('a').dataset.pushyUrl = '/x/2/'")
    wait_for(site.page, "sent().length === 3")
    assert sent(site.page) == [
        ["subscribe", "/x/1/"],
        ["subscribe", "/x/2/"],
        ["unsubscribe", "/x/1/"],
    ]


def test_updates_deletes_and_resyncs_become_bubbling_dom_events(site):
    site.open(
        '<ul id="list" data-pushy-url="/x/">'
        '<li id="one" data-pushy-url="/x/1/"></li>'
        '<li id="two" data-pushy-url="/x/2/" data-pushy-events="delete"></li></ul>'
        '<p id="creates" data-pushy-url="/x/" data-pushy-events="create"></p>'
    )
    site.page.evaluate(
        """() => {
        update("/x/1/", "update", {collection: "/x/", data: {n: 1}});
        update("/x/2/", "update", {collection: "/x/"});
        update("/x/3/", "create", {collection: "/x/"});
    }"""
    )
    site.page.evaluate("frame()")
    site.page.evaluate("update('/x/2/', 'delete', {collection: '/x/'})")
    site.page.evaluate("frame()")
    site.page.evaluate("last().receive({type: 'resync', url: '/x/1/'})")
    assert site.page.evaluate("events") == [
        ["update", "one", "/x/1/"],  # on the object's element (and bubbled up)
        ["update", "list", "/x/1/"],  # on its collection's
        ["update", "list", "/x/2/"],  # "two" hears deletes only
        ["update", "list", "/x/3/"],
        ["update", "creates", "/x/3/"],
        ["delete", "two", "/x/2/"],
        ["update", "list", "/x/2/"],
        ["resync", "one", "/x/1/"],
    ]
    detail = site.page.evaluate(
        """new Promise((resolve) => {
        document.getElementById("one").addEventListener("pushy:update",
          (e) => resolve({bubbles: e.bubbles, data: e.detail.data}), {once: true});
        update("/x/1/", "update", {data: {n: 2}});
    })"""
    )
    assert detail == {"bubbles": True, "data": {"n": 2}}


def test_a_huge_or_blank_url_is_reported_and_the_rest_keeps_working(site):
    site.open('<p id="a" data-pushy-url="/x/1/"></p>')
    site.page.evaluate(
        """() => {
        const huge = document.createElement("p");
        huge.dataset.pushyUrl = "/" + "x".repeat(100000);
        const blank = document.createElement("p");
        blank.dataset.pushyUrl = "   ";
        document.body.append(huge, blank);
    }"""
    )
    wait_for(site.page, "errors.length === 2")
    assert [code for code, _ in site.page.evaluate("errors")] == ["invalid", "invalid"]
    assert "longer than 2048" in site.page.evaluate("errors[0][1]")
    site.page.evaluate("update('/x/1/')")
    wait_for(site.page, "events.length === 1")
    assert sent(site.page) == [["subscribe", "/x/1/"]]
    # The gateway's refusal of a URL it does not like takes the same path.
    site.page.evaluate(
        """last().receive({type: "error", code: "invalid", url: "/x/1/",
            message: "url must be a URL string"})"""
    )
    wait_for(site.page, "errors.length === 3")


def test_existing_callbacks_share_the_subscription(site):
    site.open('<p id="a" data-pushy-url="/x/1/"></p>')
    site.page.evaluate(
        """() => {
        window.heard = [];
        app.subscribe("/x/1/", (m) => heard.push(m.type));
        document.getElementById("a").remove();
    }"""
    )
    site.page.evaluate("new Promise((r) => setTimeout(r, 50))")
    # The page's own callback still holds the URL: no unsubscribe was sent.
    assert sent(site.page) == [["subscribe", "/x/1/"]]
    site.page.evaluate("update('/x/1/')")
    wait_for(site.page, "heard.length === 1")


def test_close_unsubscribes_and_init_subscribes_again(site):
    site.open('<p id="a" data-pushy-url="/x/1/"></p>')
    site.page.evaluate("app.close(); app.init(); last().open()")
    assert sent(site.page) == [["subscribe", "/x/1/"]]


def row(pk: int, text: str, extra: str = "") -> str:
    attributes = f'id="row-{pk}" data-pushy-url="/x/{pk}/" data-pushy-refresh'
    return f"<li {attributes}>{text}{extra}</li>"


FORM = (
    '<form id="f"><input name="title" value="{value}">'
    '<textarea name="note"></textarea></form>'
)


def test_refresh_replaces_the_element_by_id_from_the_fetched_page(site):
    site.open("<ul>" + row(1, "old") + row(2, "two") + "</ul>")
    site.pages["/page"] = (200, page_html(f"<ul>{row(1, 'new')}{row(2, '2!')}</ul>"))
    site.page.evaluate("update('/x/1/')")
    wait_for(site.page, "events.some((e) => e[0] === 'refreshed')")
    assert site.page.inner_text("#row-1") == "new"
    assert site.page.inner_text("#row-2") == "two"  # not asked to refresh
    assert site.fetches == ["/page"]
    # The new element is bound in place of the old: no churn, still live.
    site.page.evaluate("update('/x/1/')")
    wait_for(site.page, "events.filter((e) => e[0] === 'refreshed').length === 2")
    assert sent(site.page) == [["subscribe", "/x/1/"], ["subscribe", "/x/2/"]]


def test_refresh_keeps_the_focused_and_edited_fields_untouched(site):
    site.open(
        '<section id="s" data-pushy-url="/x/1/" data-pushy-refresh>'
        "<h2>old</h2>" + FORM.format(value="") + "</section>"
    )
    site.page.fill("[name=note]", "half a sentence")
    site.page.fill("[name=title]", "half-typed")
    site.page.evaluate(
        """() => {
        const title = document.querySelector("[name=title]");
        title.setSelectionRange(2, 4);
        window.before = {title, note: document.querySelector("[name=note]")};
    }"""
    )
    site.pages["/page"] = (
        200,
        page_html(
            '<section id="s" data-pushy-url="/x/1/" data-pushy-refresh class="v2">'
            "<h2>new</h2><p>added</p>" + FORM.format(value="from server") + "</section>"
        ),
    )
    site.page.evaluate("update('/x/1/')")
    wait_for(site.page, "events.some((e) => e[0] === 'refreshed')")
    assert site.page.inner_text("#s h2") == "new"
    assert site.page.inner_text("#s p") == "added"
    assert site.page.get_attribute("#s", "class") == "v2"
    assert site.page.evaluate(
        """() => {
        const title = document.querySelector("[name=title]");
        return [title === before.title, document.activeElement === title,
                title.value, title.selectionStart, title.selectionEnd,
                document.querySelector("[name=note]") === before.note,
                before.note.value];
    }"""
    ) == [True, True, "half-typed", 2, 4, True, "half a sentence"]


def test_refresh_keeps_the_scroll_position(site):
    tall = '<div style="height: 3000px"></div>'
    site.open(row(1, "old") + tall)
    site.page.evaluate("window.scrollTo(0, 1200)")
    site.pages["/page"] = (200, page_html(row(1, "new") + tall))
    site.page.evaluate("update('/x/1/')")
    wait_for(site.page, "events.some((e) => e[0] === 'refreshed')")
    assert site.page.evaluate("window.scrollY") == 1200


def test_a_burst_of_updates_costs_one_fetch(site):
    rows = "".join(row(pk, f"r{pk}") for pk in range(1, 21))
    site.open("<ul>" + rows + "</ul>")
    site.page.evaluate(
        """async () => {
        app.refresh_delay = 0.5;  // longer than the burst, even on a busy machine
        for (let i = 0; i < 50; i++) {
          update("/x/" + (1 + i % 20) + "/");
          if (i % 10 === 9) { await frame(); }
        }
    }"""
    )
    wait_for(site.page, "events.filter((e) => e[0] === 'refreshed').length === 20")
    assert site.fetches == ["/page"]


def test_an_element_missing_from_the_page_or_deleted_is_removed(site):
    site.open("<ul>" + row(1, "one") + row(2, "two") + row(3, "three") + "</ul>")
    site.pages["/page"] = (200, page_html(f"<ul>{row(1, 'one')}{row(3, '3')}</ul>"))
    site.page.evaluate("update('/x/2/')")
    wait_for(site.page, "!document.getElementById('row-2')")
    site.page.evaluate("update('/x/3/', 'delete')")
    wait_for(site.page, "!document.getElementById('row-3')")
    assert site.fetches == ["/page"]  # a delete needs no fetch
    wait_for(site.page, "sent().filter((m) => m[0] === 'unsubscribe').length === 2")


def test_a_failed_fetch_leaves_the_element_and_is_retried(site):
    site.open(row(1, "old"))
    site.pages["/page"] = (500, "<p>server error</p>")
    site.page.evaluate("update('/x/1/')")
    wait_for(site.page, "errors.length === 1")
    assert site.page.evaluate("errors[0][0]") == "refresh"
    assert "HTTP 500" in site.page.evaluate("errors[0][1]")
    assert site.page.inner_text("#row-1") == "old"
    site.pages["/page"] = (200, page_html(row(1, "new")))
    wait_for(site.page, "document.getElementById('row-1').textContent === 'new'")
    assert site.fetches == ["/page", "/page"]


def test_a_network_error_leaves_the_element_and_is_reported(site):
    site.open(row(1, "old"))
    site.page.route(f"{ORIGIN}/page", lambda route: route.abort("connectionreset"))
    site.page.evaluate("update('/x/1/')")
    wait_for(site.page, "errors.length === 1")
    assert "could not refresh" in site.page.evaluate("errors[0][1]")
    assert site.page.inner_text("#row-1") == "old"


def test_scripts_in_the_fetched_html_do_not_run(site):
    site.open(row(1, "old"))
    site.pages["/page"] = (
        200,
        page_html(row(1, "new", "<script>window.ran = true</script>")),
    )
    site.page.evaluate("update('/x/1/')")
    wait_for(site.page, "events.some((e) => e[0] === 'refreshed')")
    assert site.page.evaluate("window.ran === undefined")
    assert site.page.locator("#row-1 script").count() == 1


def test_refresh_url_of_another_origin_or_without_id_is_refused(site):
    site.open(
        '<p id="a" data-pushy-url="/x/1/" data-pushy-refresh="http://evil.test/">a</p>'
        '<p data-pushy-url="/x/1/" data-pushy-refresh>b</p>'
    )
    site.page.evaluate("update('/x/1/')")
    wait_for(site.page, "errors.length === 2")
    messages = " ".join(message for _, message in site.page.evaluate("errors"))
    assert "origin" in messages and "needs an id" in messages
    assert site.fetches == []


def test_a_listener_can_cancel_the_refresh(site):
    site.open(row(1, "old"))
    site.page.evaluate(
        "document.addEventListener('pushy:update', (e) => e.preventDefault())"
    )
    site.page.evaluate("update('/x/1/')")
    wait_for(site.page, "events.length === 1")
    site.page.evaluate("new Promise((r) => setTimeout(r, 200))")
    assert site.fetches == []


def test_refresh_sends_the_page_cookies(site):
    cookie = {"name": "sessionid", "value": "abc", "url": ORIGIN}
    site.page.context.add_cookies([cookie])
    site.open(row(1, "old"))
    headers = {}

    def answer(route):
        headers.update(route.request.headers)
        body = page_html(row(1, "new"))
        route.fulfill(status=200, body=body, content_type="text/html")

    site.page.route(f"{ORIGIN}/page", answer)
    site.page.evaluate("update('/x/1/')")
    wait_for(site.page, "events.some((e) => e[0] === 'refreshed')")
    assert "sessionid=abc" in headers.get("cookie", "")
    assert headers.get("x-pushy-refresh") == "1"


def test_nested_elements_refreshed_together_come_from_one_fetch(site):
    inner = row(1, "old")
    site.open(f'<ul id="list" data-pushy-url="/x/" data-pushy-refresh>{inner}</ul>')
    fresh = f'<ul id="list" data-pushy-url="/x/" data-pushy-refresh>{row(1, "new")}'
    site.pages["/page"] = (200, page_html(fresh + row(2, "two") + "</ul>"))
    site.page.evaluate("update('/x/1/', 'update', {collection: '/x/'})")
    wait_for(site.page, "events.some((e) => e[0] === 'refreshed')")
    assert site.page.inner_text("#list") == "new\ntwo"
    assert site.fetches == ["/page"]
