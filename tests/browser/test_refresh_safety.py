"""data-pushy-refresh inserts only the site's own HTML, in Chromium.

Two real HTTP servers on 127.0.0.1 are two origins: the site's, serving the
page, pushy.js and the refresh URLs, and a foreign one (an attacker's). The
payload, were it inserted, would run its ``onerror`` in the site's origin and
set ``window.pwned``. Refused answers leave the old content, warn on the
console and dispatch a bubbling ``pushy:error`` on the element. The gateway is
the scripted WebSocket of test_client_logic.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.browser.test_client_logic import FAKE_WEBSOCKET, PUSHY_JS
from tests.browser.test_declarative import SETUP, page_html

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]

# Unquoted attributes: it survives being a JSON string.
PAYLOAD = "<li id=row-1><img src=/no-such-image onerror=window.pwned=1>evil</li>"

WATCH = """
window.failures = [];
document.addEventListener("pushy:error", (e) => failures.push(
  Object.assign({target: e.target.id, bubbles: e.bubbles}, e.detail)));
window.onWindow = 0;
window.addEventListener("pushy:error", () => onWindow++);
"""

HTML = "text/html; charset=utf-8"


class Origin:
    """An HTTP server of its own origin: path -> (status, headers, body)."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, dict[str, str], str]] = {}
        self.requests: list[str] = []
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                origin.requests.append(self.path)
                status, headers, body = origin.answers.get(
                    self.path, (404, {"Content-Type": HTML}, "<p>not found</p>")
                )
                data = body.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_OPTIONS(self) -> None:  # noqa: N802
                # A CORS preflight (X-Pushy-Refresh is not a simple header),
                # allowed when the GET answer allows CORS.
                origin.requests.append("OPTIONS " + self.path)
                _, headers, _ = origin.answers.get(self.path, (404, {}, ""))
                allowed = "Access-Control-Allow-Origin" in headers
                self.send_response(204 if allowed else 404)
                if allowed:
                    self.send_header("Access-Control-Allow-Origin", "*")
                    self.send_header("Access-Control-Allow-Headers", "*")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def html(self, path: str, body: str, status: int = 200, **headers: str) -> None:
        self.answers[path] = (status, {"Content-Type": HTML, **headers}, body)

    def redirect(self, path: str, location: str) -> None:
        self.answers[path] = (302, {"Location": location}, "")

    def fetched(self, path: str) -> int:
        return self.requests.count(path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def own():
    origin = Origin()
    origin.answers["/pushy.js"] = (
        200,
        {"Content-Type": "text/javascript"},
        PUSHY_JS.read_text(),
    )
    yield origin
    origin.close()


@pytest.fixture
def foreign():
    origin = Origin()
    yield origin
    origin.close()


def refreshed_from(path: str, text: str = "old") -> str:
    return (
        f'<ul><li id="row-1" data-pushy-url="/x/1/" data-pushy-refresh="{path}">'
        f"{text}</li></ul>"
    )


def open_page(page, own: Origin, body: str) -> None:
    own.html("/page", page_html(body))
    page.add_init_script(FAKE_WEBSOCKET)
    page.goto(own.url + "/page")
    page.evaluate(SETUP)
    page.evaluate(WATCH)


def update(page) -> None:
    page.evaluate("update('/x/1/')")


def first_failure(page) -> dict:
    page.wait_for_function("failures.length >= 1", timeout=5_000)
    return page.evaluate("failures[0]")


def settle(page, ms: int = 300) -> None:
    page.evaluate(f"new Promise((r) => setTimeout(r, {ms}))")


def assert_untouched(page) -> None:
    settle(page)  # an inserted <img> would have failed to load by now
    assert page.inner_text("#row-1") == "old"
    assert page.evaluate("window.pwned") is None
    assert page.locator("img").count() == 0


def test_control_the_sites_own_html_is_inserted_and_its_attributes_run(page, own):
    # The payload does run when the site itself serves it as its HTML: what the
    # tests below see not happening would have happened.
    open_page(page, own, refreshed_from("/part"))
    own.html("/part", page_html(PAYLOAD))
    update(page)
    page.wait_for_function("window.pwned === 1", timeout=5_000)
    assert page.inner_text("#row-1") == "evil"


@pytest.mark.parametrize("cors", [True, False], ids=["readable", "unreadable"])
def test_an_open_redirect_to_another_origin_is_not_inserted(page, own, foreign, cors):
    open_page(page, own, refreshed_from("/go"))
    # The same path on the foreign origin: the old guard compared only paths.
    own.redirect("/go", foreign.url + "/go")
    headers = {"Access-Control-Allow-Origin": "*"} if cors else {}
    foreign.html("/go", page_html(PAYLOAD), **headers)
    update(page)
    failure = first_failure(page)
    # The redirect was followed (after a CORS preflight the attacker allows).
    assert foreign.fetched("/go") == (1 if cors else 0)
    assert_untouched(page)
    assert failure["code"] == "refresh"
    assert failure["target"] == "row-1" and failure["bubbles"] is True
    assert failure["url"] == own.url + "/go"
    if cors:
        assert failure["reason"] == "foreign-origin"
        assert failure["status"] == 200
        assert failure["responseUrl"] == foreign.url + "/go"
        warning = f"redirected to {foreign.url}/go"
    else:
        # The browser itself refuses an answer the foreign origin did not
        # open to CORS: a network error, like any other.
        assert failure["reason"] == "network"
        assert failure["status"] is None
        warning = "could not refresh"
    assert any(warning in line for line in page.log.console)
    assert page.evaluate("errors")[0][0] == "refresh"  # on_error hears it too


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "text/plain; charset=utf-8", "image/svg+xml", None],
)
def test_an_answer_that_is_not_html_is_not_inserted(page, own, content_type):
    open_page(page, own, refreshed_from("/search?q=x"))
    headers = {"Content-Type": content_type} if content_type else {}
    own.answers["/search?q=x"] = (200, headers, json.dumps({"q": PAYLOAD}))
    update(page)
    failure = first_failure(page)
    assert_untouched(page)
    assert failure["reason"] == "not-html"
    assert failure["status"] == 200
    assert failure["url"] == own.url + "/search?q=x"
    assert "responseUrl" not in failure  # not redirected
    expected = content_type.split(";")[0] if content_type else "of no Content-Type"
    assert any(
        f"the answer is {expected}, not text/html" in line for line in page.log.console
    )


def test_text_html_with_parameters_is_html(page, own):
    open_page(page, own, refreshed_from("/part"))
    own.html(
        "/part",
        page_html(refreshed_from("/part", "new")),
        **{"Content-Type": 'Text/HTML ; charset="utf-8"'},
    )
    update(page)
    page.wait_for_function("document.getElementById('row-1').textContent === 'new'")
    assert page.evaluate("failures") == []


def test_a_redirect_within_the_same_path_is_followed(page, own):
    open_page(page, own, refreshed_from("/part?v=1"))
    own.redirect("/part?v=1", "/part?v=2")
    own.html("/part?v=2", page_html(refreshed_from("/part?v=1", "new")))
    update(page)
    page.wait_for_function("document.getElementById('row-1').textContent === 'new'")
    assert page.evaluate("failures") == []


def test_a_redirect_to_another_path_a_login_page_is_retried(page, own):
    open_page(page, own, refreshed_from("/part"))
    own.redirect("/part", "/accounts/login/?next=/part")
    own.html("/accounts/login/?next=/part", page_html(PAYLOAD))
    update(page)
    failure = first_failure(page)
    assert failure["reason"] == "redirected"
    assert failure["responseUrl"] == own.url + "/accounts/login/?next=/part"
    assert "trying again in 1 s" in failure["message"]
    assert_untouched(page)
    # Logged in again (in another tab, say): the retry brings the part.
    own.html("/part", page_html(refreshed_from("/part", "new")))
    page.wait_for_function("document.getElementById('row-1').textContent === 'new'")
    assert own.fetched("/part") == 2


def test_a_server_error_is_retried(page, own):
    open_page(page, own, refreshed_from("/part"))
    own.html("/part", "<p>oops</p>", status=500)
    update(page)
    failure = first_failure(page)
    assert (failure["reason"], failure["status"]) == ("status", 500)
    assert page.evaluate("onWindow") == 1  # one event, reaching window by bubbling
    own.html("/part", page_html(refreshed_from("/part", "new")))
    page.wait_for_function("document.getElementById('row-1').textContent === 'new'")


def test_403_marks_the_element_and_is_not_retried(page, own):
    open_page(page, own, refreshed_from("/part"))
    own.html("/part", page_html(PAYLOAD), status=403)
    update(page)
    failure = first_failure(page)
    assert (failure["reason"], failure["status"]) == ("status", 403)
    assert "not tried again" in failure["message"]
    assert page.get_attribute("#row-1", "data-pushy-forbidden") == ""
    settle(page, 1_500)  # a retry would have come after 1 s
    assert_untouched(page)
    assert own.fetched("/part") == 1
    # The next change of the element's URL asks again; allowed, it refreshes.
    own.html("/part", page_html(refreshed_from("/part", "new")))
    update(page)
    page.wait_for_function("document.getElementById('row-1').textContent === 'new'")
    assert page.get_attribute("#row-1", "data-pushy-forbidden") is None


@pytest.mark.parametrize("status", [404, 410])
def test_404_removes_the_element_and_is_not_retried(page, own, status):
    open_page(page, own, refreshed_from("/part") + '<p id="other">stays</p>')
    own.html("/part", page_html(PAYLOAD), status=status)
    update(page)
    page.wait_for_function("!document.getElementById('row-1')", timeout=5_000)
    failure = page.evaluate("failures[0]")
    assert failure["target"] == "row-1"  # dispatched before it went
    assert (failure["reason"], failure["status"]) == ("status", status)
    assert "removed, as for a delete" in failure["message"]
    settle(page, 1_500)
    assert own.fetched("/part") == 1
    assert page.evaluate("window.pwned") is None
    assert page.inner_text("#other") == "stays"
    page.wait_for_function("sent().some((m) => m[0] === 'unsubscribe')")


def test_a_refresh_url_of_another_origin_is_refused_on_the_element(page, own, foreign):
    open_page(page, own, refreshed_from(foreign.url + "/part"))
    update(page)
    failure = first_failure(page)
    assert failure["target"] == "row-1"
    assert failure["reason"] == "foreign-origin"
    assert failure["url"] == foreign.url + "/part"
    assert_untouched(page)
    assert foreign.requests == []
