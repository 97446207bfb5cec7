"""The dashboard's login end to end in Debian's chromium, against a local OpenID Connect provider.

``oidc-provider-mock`` (a real OIDC provider for tests) runs on 127.0.0.1 with three users; the
dashboard is started the way users start it, ``python -m flows.cli dashboard --secrets FILE``, with a
temporary secrets file (nothing is written into the repository) whose ``[auth]`` points at that
provider, and with ``viewer@example.org`` a viewer and ``analyst@example.org`` an analyst. Nothing leaves
the machine. The first request the fresh server gets is a direct link to the SQL page (the case where
Streamlit runs a page file without app.py).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser_util import CHROMIUM, free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWER, ANALYST, STRANGER = "viewer@example.org", "analyst@example.org", "stranger@elsewhere.net"

pytestmark = pytest.mark.slow


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    """URL of a mock OpenID Connect provider on 127.0.0.1 that knows the three users."""
    port = free_port()
    log = tmp_path_factory.mktemp("oidc") / "provider.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1",
                                 "--port", str(port), "--user", VIEWER, "--user", ANALYST, "--user", STRANGER],
                                env={**os.environ, "NO_COLOR": "1"}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/.well-known/openid-configuration", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the mock OpenID provider did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def dashboard(provider, tmp_path_factory):
    """(base URL, server log) of ``emotivoice dashboard`` with the login on ``provider``."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    import warehouse

    tmp = tmp_path_factory.mktemp("login")
    db = warehouse.ensure_database(tmp / "empty.duckdb")
    port = free_port()
    secrets_file = tmp / "secrets.toml"
    secrets_file.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_hex(32)}"\n'
        'client_id = "emotivoice-test"\n'
        'client_secret = "test-client-secret"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOTIVOICE_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", EMOTIVOICE_VIEWERS=VIEWER, EMOTIVOICE_ANALYSTS=ANALYST,
               EMOTIVOICE_WHISPER_MODEL="none", EMOTIVOICE_DATA_DIR=str(tmp / "data"))
    log = tmp / "dashboard.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "dashboard", "--db", str(db), "--port", str(port),
                                 "--secrets", str(secrets_file)],
                                cwd=str(ROOT), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(port, proc, log)
        yield f"http://127.0.0.1:{port}", log
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, dashboard, request):
    context = browser.new_context(viewport={"width": 1300, "height": 1000})  # a new session: no cookies
    pg = context.new_page()
    pg.set_default_timeout(120_000)  # generous: the machine may be busy with other work
    yield pg
    ARTIFACTS.mkdir(exist_ok=True)  # what the browser saw last, pass or fail
    pg.screenshot(path=str(ARTIFACTS / f"login-{request.node.name}.png"), full_page=True)
    context.close()


def settle(page) -> None:
    time.sleep(0.5)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
    time.sleep(1.0)


def nav_links(page) -> list[str]:
    """The sidebar's page links, by title (each link's text starts with its icon's name)."""
    return [t.split()[-1] for t in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]


def sign_in(page, base: str, email: str) -> None:
    page.goto(base + "/")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("button", name=email, exact=True).click()  # the provider's page: sign in as this user
    page.wait_for_url(base + "/**")
    settle(page)


def test_no_session_sees_only_the_login_even_by_direct_link(dashboard, page):
    base, log = dashboard
    page.goto(base + "/sql")  # the fresh server's first request names an analyst page
    page.get_by_text("Sign in to see the dashboard.").wait_for()
    settle(page)
    assert page.get_by_role("button", name="Log in").is_visible()
    assert page.get_by_role("textbox", name="Query").count() == 0
    assert page.get_by_role("heading", name="SQL", exact=True).count() == 0
    assert nav_links(page) == []
    page.goto(base + "/")
    page.get_by_text("Sign in to see the dashboard.").wait_for()
    settle(page)
    assert page.get_by_role("heading", name="Overview", exact=True).count() == 0
    assert nav_links(page) == []


def test_an_allowed_viewer_sees_pages_but_not_sql(dashboard, page):
    base, log = dashboard
    sign_in(page, base, VIEWER)
    page.get_by_role("heading", name="Overview", exact=True).wait_for()
    settle(page)
    assert nav_links(page) == ["Overview", "File", "Explain"], nav_links(page)
    assert page.get_by_text(f"{VIEWER} · viewer").is_visible()
    # The SQL page's own link runs no SQL page for a viewer.
    page.goto(base + "/sql")
    page.get_by_text("Page not found").wait_for()
    settle(page)
    assert page.get_by_role("heading", name="SQL", exact=True).count() == 0
    assert page.get_by_role("textbox", name="Query").count() == 0
    assert "SQL" not in nav_links(page)


def test_an_unknown_user_is_refused(dashboard, page):
    base, log = dashboard
    sign_in(page, base, STRANGER)
    page.get_by_text("This account is not allowed to use this dashboard.").wait_for()
    assert page.get_by_text(f"Signed in as: {STRANGER}").is_visible()
    assert page.get_by_role("heading", name="Overview", exact=True).count() == 0
    assert nav_links(page) == []
    assert f"refused {STRANGER}" in log.read_text()


def test_an_analyst_gets_sql(dashboard, page):
    base, log = dashboard
    sign_in(page, base, ANALYST)
    page.get_by_role("heading", name="Overview", exact=True).wait_for()
    settle(page)
    assert nav_links(page) == ["Overview", "File", "Explain", "SQL", "Runs", "Live"], nav_links(page)
    page.get_by_role("link", name="SQL", exact=True).first.click()
    page.get_by_role("heading", name="SQL", exact=True).wait_for()
    page.get_by_role("textbox", name="Query").wait_for()
    assert page.url == base + "/sql"
