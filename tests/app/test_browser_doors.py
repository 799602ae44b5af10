"""Every page of the app opened by its own address, the first of them as a fresh server's first request.

Streamlit discovers a ``pages/`` folder beside the entry script on its own; before the entry script has run
once, a request for ``/train`` then ran ``pages/train.py`` directly, without the entry script's ``sys.path``
set-up: ``No module named 'app'`` and a plain lowercase menu, until someone opened ``/``. The pages now live in
``app/views/`` (only ``st.navigation`` knows them), and this test opens each by its address. It also holds the
app to working offline: no request may go to a host other than the app's (the favicon was once a material icon,
fetched from an outside font host), and to no failed response but one kind: opened at ``/<page>``, Streamlit's
own front end first looks for its server under that path (``/<page>/_stcore/health`` and ``/host-config``,
404) and then at the root. That probe is Streamlit's, made before any of the app's code runs; any other 4xx or
5xx fails the test.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

import pytest

from tests import conftest_app
from tests.browser_support import BROWSER_MARKS, launch, settle, streamlit_server

assets = conftest_app.assets  # the shared fixture, made visible to pytest in this module

pytestmark = BROWSER_MARKS

# Address, and the heading that page shows; /train first: it is the fresh server's first request.
DOORS = [
    ("train", "Train"),
    ("dataset", "Dataset"),
    ("calibration", "Calibration"),
    ("attention", "Attention"),
    ("side_by_side", "Side by side"),
    ("", "Playground"),
]


@pytest.fixture(scope="module")
def fresh_url(assets, tmp_path_factory):
    env = {**os.environ, **conftest_app.app_environ(assets, max_steps=60), "DT_TORCH_THREADS": "1"}
    with streamlit_server(env, tmp_path_factory.mktemp("streamlit-doors") / "server.log") as srv:
        yield srv.url


def test_each_page_opens_by_its_address_on_a_fresh_server(fresh_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        hosts: set[str] = set()
        failed: list[str] = []
        page.on("request", lambda req: hosts.add(urlsplit(req.url).hostname or req.url[:20]))
        page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
        for path, title in DOORS:
            page.goto(f"{fresh_url}/{path}")
            page.get_by_role("heading", level=1).first.wait_for()
            settle(page)
            assert page.locator('[data-testid="stException"]').count() == 0, path
            nav = page.locator('[data-testid="stSidebarNav"]')
            assert nav.get_by_text(title, exact=True).count() >= 1, f"/{path}: the menu lacks {title!r}"
            assert nav.get_by_text("side by side", exact=True).count() == 0, f"/{path}: auto-generated menu"
        browser.close()
    print(f"\nhosts requested: {sorted(hosts)}; failed responses: {failed}")
    assert hosts <= {"127.0.0.1"}, f"requests left the machine: {sorted(hosts - {'127.0.0.1'})}"
    probe = re.compile(r"^404 http://127\.0\.0\.1:\d+/[a-z_]+/_stcore/(health|host-config)$")
    assert [f for f in failed if not probe.match(f)] == [], failed
