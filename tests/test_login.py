"""Login and roles of the dashboard (dashboard/auth.py), without a browser.

``emotivoice dashboard`` is run as a subprocess (it must refuse a network address without a login), and
the app through Streamlit's AppTest with ``at.secrets`` (the ``[auth]`` login) and ``at.user`` (who is
signed in). The real sign-in through an OpenID provider is in tests/test_login_browser.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard import auth
from pipeline.config import Config

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "app.py"
AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "x" * 40,
        "client_id": "emotivoice", "client_secret": "s3cret",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}
ACCESS = {"viewers": ("viewer@example.org", "@readers.example.org"), "analysts": ("Ana@Example.org",)}


# ----------------------------------------------------------------------------- rules
@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LocalHost"])
def test_loopback_addresses(host):
    assert auth.is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "", None, "dash.example.org",
                                  "localhost.example.org"])
def test_network_addresses_are_not_loopback(host):
    assert not auth.is_loopback(host)


@pytest.mark.parametrize(("email", "role"), [
    ("ana@example.org", "analyst"),
    ("ANA@example.ORG", "analyst"),
    ("viewer@example.org", "viewer"),
    ("anyone@readers.example.org", "viewer"),
    ("someone@example.org", None),              # same domain, not listed
    ("x@sub.readers.example.org", None),        # a domain entry is that domain only
    ("x@readers.example.org.evil.net", None),
    ("a@b@readers.example.org", None),
    ("", None),
    (None, None),
    ("not-an-address", None),
])
def test_roles_come_from_the_allow_lists(email, role):
    assert auth.role_for(email, Config(**ACCESS)) == role


def test_an_address_in_both_lists_is_an_analyst():
    cfg = Config(viewers=("@example.org",), analysts=("ana@example.org",))
    assert auth.role_for("ana@example.org", cfg) == "analyst"
    assert auth.role_for("bob@example.org", cfg) == "viewer"


def test_allow_lists_read_from_the_environment():
    from pipeline.config import load_config

    cfg = load_config(env={"EMOTIVOICE_VIEWERS": "v@example.org, @team.example.org", "EMOTIVOICE_NO_LOGIN": "1"})
    assert cfg.viewers == ("v@example.org", "@team.example.org")
    assert cfg.no_login is True


def test_a_complete_login_lists_its_providers():
    assert auth.read_login(AUTH).providers == ("default",)
    named = {"redirect_uri": AUTH["redirect_uri"], "cookie_secret": "c",
             "corp": {k: AUTH[k] for k in auth.PROVIDER_KEYS}}
    assert auth.read_login(named).providers == ("corp",)
    assert auth.read_login(None) is None


def test_an_incomplete_login_names_what_is_missing():
    with pytest.raises(ValueError, match="missing cookie_secret, client_secret"):
        auth.read_login({k: v for k, v in AUTH.items() if k not in ("cookie_secret", "client_secret")}, "s.toml")
    with pytest.raises(ValueError, match="missing client_id, client_secret, server_metadata_url"):
        auth.read_login({"redirect_uri": "http://x/oauth2callback", "cookie_secret": "c"})


def test_plan_warns_when_serving_without_login_on_purpose(tmp_path):
    plan = auth.plan_serving("0.0.0.0", 8600, Config(no_login=True), [tmp_path / "none.toml"])
    assert plan.problem is None and plan.login is None
    assert any("everyone who can reach 0.0.0.0:8600" in n for n in plan.notes)
    assert auth.plan_serving("127.0.0.1", 8600, Config(), [tmp_path / "none.toml"]).notes == []


def test_plan_warns_when_the_redirect_uri_points_elsewhere(tmp_path):
    secrets = write_secrets(tmp_path, AUTH)
    plan = auth.plan_serving("127.0.0.1", 8600, Config(**ACCESS), [secrets])
    assert plan.problem is None and plan.login is not None
    assert any("does not point at port 8600" in n for n in plan.notes)


# ----------------------------------------------------------------------------- the CLI
def write_secrets(tmp_path: Path, auth_section: dict | None) -> Path:
    lines = []
    if auth_section is not None:
        lines.append("[auth]")
        lines += [f'{k} = "{v}"' for k, v in auth_section.items()]
    path = tmp_path / "secrets.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EMOTIVOICE_")}
    environ.update(HOME=str(tmp_path), **env)  # no ~/.streamlit/secrets.toml of the machine's user
    return subprocess.run([sys.executable, "-m", "flows.cli", "dashboard", "--db", str(tmp_path / "e.duckdb"),
                           *args], cwd=str(tmp_path), env=environ, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "::"])
def test_cli_refuses_a_network_address_without_a_login(tmp_path, host):
    secrets = write_secrets(tmp_path, None)
    done = run_cli(tmp_path, "--host", host, "--port", "18591", "--secrets", str(secrets))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"emotivoice dashboard: refusing to serve on {host} without a login")
    assert "--no-login" in lines[0]
    assert "EmotiVoice dashboard on" not in done.stdout  # nothing was started


def test_cli_starts_without_login_only_on_purpose_and_warns(tmp_path):
    # 192.0.2.1 (TEST-NET-1) is not an address of this machine: past the check, streamlit fails to bind,
    # so nothing is ever served to the network by this test.
    secrets = write_secrets(tmp_path, None)
    done = run_cli(tmp_path, "--host", "192.0.2.1", "--port", "18592", "--secrets", str(secrets), "--no-login")
    assert "warning: no login (--no-login): everyone who can reach 192.0.2.1:18592" in done.stderr
    assert "EmotiVoice dashboard on http://192.0.2.1:18592" in done.stdout
    assert "no login" in done.stdout


def test_cli_refuses_an_incomplete_login(tmp_path):
    secrets = write_secrets(tmp_path, {k: v for k, v in AUTH.items() if k != "client_secret"})
    done = run_cli(tmp_path, "--port", "18593", "--secrets", str(secrets), EMOTIVOICE_VIEWERS="@example.org")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"emotivoice dashboard: {secrets}: the [auth] login is incomplete, missing client_secret"]


def test_cli_refuses_a_login_that_lets_nobody_in(tmp_path):
    secrets = write_secrets(tmp_path, AUTH)
    done = run_cli(tmp_path, "--host", "0.0.0.0", "--port", "18594", "--secrets", str(secrets))
    assert done.returncode == 2
    assert "a login is configured but nobody may enter: set viewers and/or analysts" in done.stderr


def test_cli_names_a_missing_secrets_file(tmp_path):
    done = run_cli(tmp_path, "--secrets", str(tmp_path / "nope.toml"))
    assert done.returncode == 2
    assert done.stderr.strip() == f"emotivoice dashboard: secrets file {tmp_path / 'nope.toml'} does not exist"


# ----------------------------------------------------------------------------- the app (AppTest)
def make_app(monkeypatch, db, *, login: dict | None = None, user: dict | None = None, script: Path = APP, **env):
    from streamlit.testing.v1 import AppTest

    monkeypatch.chdir(ROOT)  # .streamlit/config.toml (loopback address) is read from the working directory
    monkeypatch.setenv("EMOTIVOICE_DB", str(db))
    for key in [k for k in os.environ if k.startswith("EMOTIVOICE_") and k != "EMOTIVOICE_DB"]:
        monkeypatch.delenv(key)
    for key, value in {"viewers": ",".join(ACCESS["viewers"]), "analysts": ",".join(ACCESS["analysts"]),
                       **env}.items():
        monkeypatch.setenv(f"EMOTIVOICE_{key.upper()}", str(value))
    at = AppTest.from_file(str(script), default_timeout=180)
    if login is not None:
        at.secrets["auth"] = login
    if user is not None:
        at.user = user
    return at


def signed_in(email: str) -> dict:
    return {"is_logged_in": True, "email": email}


def texts(at, kind: str) -> list[str]:
    return [str(e.value) for e in at.get(kind)]


def test_signed_out_sees_only_the_login(monkeypatch, empty_warehouse):
    at = make_app(monkeypatch, empty_warehouse, login=AUTH, user={"is_logged_in": False}).run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Log in"]
    assert texts(at, "title") == ["EmotiVoice"]
    assert not at.info  # no page ran (the empty database's hint is not shown)


def test_signed_out_cannot_open_a_page_by_path(monkeypatch, empty_warehouse):
    at = make_app(monkeypatch, empty_warehouse, login=AUTH, user={"is_logged_in": False}).run()
    at.switch_page("pages/4_SQL.py").run()
    assert not at.text_area and [b.label for b in at.button] == ["Log in"]


def test_a_viewer_gets_pages_but_not_sql(monkeypatch, empty_warehouse):
    at = make_app(monkeypatch, empty_warehouse, login=AUTH, user=signed_in("viewer@example.org")).run()
    assert not at.exception
    assert "Overview" in texts(at, "title")
    assert "viewer@example.org · viewer" in texts(at, "text")
    assert not [t for t in at.text_area if t.key == "sql_text"]
    # The viewer's navigation holds no SQL page at all (AppTest refuses to switch to an unlisted page;
    # the browser test opens its URL).
    with pytest.raises(ValueError, match=r"Could not find a navigation page.*Known pages: \[[^]]*3_Explain.py'\]"):
        at.switch_page("pages/4_SQL.py")


@pytest.mark.parametrize("page", ["pages/5_Runs.py", "pages/6_Live.py"])
def test_a_viewer_cannot_reach_runs_or_live(monkeypatch, empty_warehouse, page):
    at = make_app(monkeypatch, empty_warehouse, login=AUTH, user=signed_in("someone@readers.example.org")).run()
    assert "Overview" in texts(at, "title")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(page)


@pytest.mark.parametrize("page", ["4_SQL.py", "5_Runs.py", "6_Live.py"])
def test_analyst_page_files_refuse_a_viewer_when_run_alone(monkeypatch, empty_warehouse, page):
    # Streamlit runs a page file without app.py when a fresh server's first request names it.
    at = make_app(monkeypatch, empty_warehouse, login=AUTH, user=signed_in("viewer@example.org"),
                  script=ROOT / "dashboard" / "pages" / page).run()
    assert texts(at, "warning") == ["This page is for analysts."]
    assert not texts(at, "title") and not at.text_area


@pytest.mark.parametrize("page", ["1_Overview.py", "4_SQL.py"])
def test_page_files_show_only_the_login_when_signed_out(monkeypatch, empty_warehouse, page):
    at = make_app(monkeypatch, empty_warehouse, login=AUTH, user={"is_logged_in": False},
                  script=ROOT / "dashboard" / "pages" / page).run()
    assert texts(at, "title") == ["EmotiVoice"] and [b.label for b in at.button] == ["Log in"]
    assert not at.info and not at.text_area


def test_an_analyst_gets_sql(monkeypatch, empty_warehouse):
    at = make_app(monkeypatch, empty_warehouse, login=AUTH, user=signed_in("ana@example.org")).run()
    at.switch_page("pages/4_SQL.py").run()
    assert "SQL" in texts(at, "title")
    at.text_area(key="sql_text").set_value("SELECT count(*) AS files FROM files")
    at.button(key="sql_run").click().run()
    assert at.dataframe[0].value["files"].tolist() == [0]


def test_an_unknown_user_is_refused(monkeypatch, empty_warehouse):
    at = make_app(monkeypatch, empty_warehouse, login=AUTH, user=signed_in("mallory@elsewhere.net")).run()
    assert texts(at, "error") == ["This account is not allowed to use this dashboard."]
    assert "Signed in as: mallory@elsewhere.net" in texts(at, "text")
    assert "Overview" not in texts(at, "title")
    assert [b.label for b in at.button] == ["Log out"]


def test_an_unverified_address_is_refused(monkeypatch, empty_warehouse):
    user = {**signed_in("ana@example.org"), "email_verified": False}
    at = make_app(monkeypatch, empty_warehouse, login=AUTH, user=user).run()
    assert "has not verified" in " ".join(texts(at, "error"))
    assert "Overview" not in texts(at, "title")


def test_an_incomplete_login_shows_nothing_but_why(monkeypatch, empty_warehouse):
    broken = {k: v for k, v in AUTH.items() if k != "server_metadata_url"}
    at = make_app(monkeypatch, empty_warehouse, login=broken, user=signed_in("ana@example.org")).run()
    assert texts(at, "error") == ["The login configuration is incomplete, so the dashboard shows nothing."]
    assert any("missing server_metadata_url" in t for t in texts(at, "text"))
    assert "Overview" not in texts(at, "title")


def test_loopback_without_login_is_open_and_says_so(monkeypatch, empty_warehouse):
    at = make_app(monkeypatch, empty_warehouse).run()
    assert "No login: served on this machine only, everyone is an analyst." in texts(at, "caption")
    at.switch_page("pages/4_SQL.py").run()
    assert "SQL" in texts(at, "title")


def test_a_network_address_without_login_shows_nothing(monkeypatch, empty_warehouse):
    from streamlit import config as st_config

    before = st_config.get_option("server.address")
    try:
        st_config.set_option("server.address", "0.0.0.0")  # as `streamlit run --server.address 0.0.0.0`
        at = make_app(monkeypatch, empty_warehouse).run()
        refused, titles = texts(at, "error"), texts(at, "title")
        opened = texts(make_app(monkeypatch, empty_warehouse, no_login="true").run(), "caption")
    finally:
        st_config.set_option("server.address", before)
    assert len(refused) == 1 and "served on a network address without a login" in refused[0]
    assert titles == ["EmotiVoice"]
    assert "No login (started with --no-login): everyone who can reach it is an analyst." in opened


def test_viewers_get_no_downloads_analysts_do(monkeypatch, filled_warehouse):
    def downloads(email: str) -> list[str]:
        at = make_app(monkeypatch, filled_warehouse.db, login=AUTH, user=signed_in(email)).run()
        assert not at.exception and "Overview" in texts(at, "title")
        return [el.proto.label for el in at.get("download_button")]

    assert downloads("ana@example.org"), "the analyst should see the selection's exports"
    assert downloads("viewer@example.org") == []
