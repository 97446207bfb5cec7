"""Login and roles of the dashboard.

The login is Streamlit's own (``st.login``: OpenID Connect, configured in the ``[auth]`` section of
``.streamlit/secrets.toml``). Who gets in is decided here, from two allow-lists in
``pipeline.config.Config``: ``viewers`` (pages and charts) and ``analysts`` (also SQL, exports, Runs and
Live). Entries are e-mail addresses or ``@domain``; anyone else is refused.

Without a login configured, the dashboard behaves as before the login existed (everyone is an analyst)
but only where that is safe: on a loopback address, or with ``no_login`` set on purpose
(``emotivoice dashboard --no-login``). Served on any other address without a login it shows one line
saying why and nothing else.

Two gates, both here: ``allowed_pages`` in ``app.py`` (the login screen, and a navigation without the
analyst pages for viewers, so no URL reaches them) and ``require`` at the top of every page file.
The second is needed: while no script of a fresh server process has called ``st.navigation`` yet,
Streamlit treats ``dashboard/pages/`` as an old-style pages folder and runs the page a URL names
directly, without ``app.py``.

The first half of this module is plain Python (the CLI uses it to refuse to start); the second half
needs a running Streamlit script and imports streamlit lazily.
"""

from __future__ import annotations

import ipaddress
import logging
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

logger = logging.getLogger("emotivoice.auth")

VIEWER = "viewer"
ANALYST = "analyst"
#: Pages (their URL path, lower case) that only analysts get: listed for them only, and unreachable
#: by URL for anyone else because ``st.navigation`` never receives them.
ANALYST_PAGES = frozenset({"sql", "runs", "live"})
AUTH_KEYS = ("redirect_uri", "cookie_secret")
PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")
SERVING_DOC = "docs/serving.md"


# ============================================================================ plain Python
def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; False for anything else, including an empty
    address (Streamlit then listens on every interface)."""
    if not host:
        return False
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Login:
    """A complete ``[auth]`` section: the providers that ``st.login`` may be called with."""

    providers: tuple[str, ...]
    redirect_uri: str


def read_login(auth: Mapping[str, Any] | None, source: str = "secrets.toml") -> Login | None:
    """The login described by an ``[auth]`` section, or None when there is none.

    Raises:
        ValueError: the section exists but Streamlit could not use it; the message names the
            missing keys and ``source``.
    """
    if auth is None:
        return None
    if not isinstance(auth, Mapping):
        raise ValueError(f"{source}: [auth] must be a table")
    missing = [k for k in AUTH_KEYS if not auth.get(k)]
    providers: list[str] = []
    if any(k in auth for k in PROVIDER_KEYS):  # the default provider, keys directly under [auth]
        gaps = [k for k in PROVIDER_KEYS if not auth.get(k)]
        missing += gaps
        providers.append("default")
    for name, section in auth.items():
        if isinstance(section, Mapping) and name != "client_kwargs":
            gaps = [f"{name}.{k}" for k in PROVIDER_KEYS if not section.get(k)]
            missing += gaps
            if "_" in name:
                raise ValueError(f"{source}: [auth.{name}]: provider names may not contain '_'")
            providers.append(name)
    if not providers:
        missing += list(PROVIDER_KEYS)
    if missing:
        raise ValueError(f"{source}: the [auth] login is incomplete, missing {', '.join(missing)}")
    return Login(tuple(providers), str(auth["redirect_uri"]))


def secrets_paths(explicit: str | None, cwd: Path) -> list[Path]:
    """Where Streamlit reads secrets: ``explicit`` alone, else ``~/.streamlit/secrets.toml`` then
    ``<cwd>/.streamlit/secrets.toml`` (later ones win, as in Streamlit)."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"secrets file {path} does not exist")
        return [path.resolve()]
    return [Path("~/.streamlit/secrets.toml").expanduser(), cwd / ".streamlit" / "secrets.toml"]


def load_secrets(paths: Iterable[Path]) -> dict[str, Any]:
    """The secrets of the existing files among ``paths``, shallow-merged in order like Streamlit."""
    merged: dict[str, Any] = {}
    for path in paths:
        if not path.is_file():
            continue
        try:
            with open(path, "rb") as fh:
                merged.update(tomllib.load(fh))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ValueError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    return merged


def _matches(email: str, entries: Iterable[str]) -> bool:
    for entry in entries:
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry.startswith("@"):
            if email.endswith(entry) and email.count("@") == 1:
                return True
        elif email == entry:
            return True
    return False


def role_for(email: str | None, config) -> str | None:
    """``analyst``, ``viewer`` or None (refused) for a signed-in e-mail address."""
    if not email or "@" not in email:
        return None
    email = email.strip().lower()
    if _matches(email, config.analysts):
        return ANALYST
    if _matches(email, config.viewers):
        return VIEWER
    return None


@dataclass
class ServingPlan:
    """What ``emotivoice dashboard`` decided: refuse (``problem``), or start with ``notes`` printed."""

    login: Login | None = None
    problem: str | None = None
    notes: list[str] = field(default_factory=list)


def plan_serving(host: str, port: int, config, secrets: Sequence[Path]) -> ServingPlan:
    """Decide whether the dashboard may be served on ``host`` with this configuration and these secrets."""
    plan = ServingPlan()
    try:
        plan.login = read_login(load_secrets(secrets).get("auth"),
                                source=" + ".join(str(p) for p in secrets if p.is_file()) or "secrets")
    except ValueError as exc:
        plan.problem = str(exc)
        return plan
    if plan.login is not None:
        if not config.viewers and not config.analysts:
            plan.problem = ("a login is configured but nobody may enter: set viewers and/or analysts "
                            f"(e-mail addresses or @domain) in the configuration, see {SERVING_DOC}")
            return plan
        if config.no_login:
            plan.notes.append("note: --no-login ignored, a login is configured in the secrets")
        redirect = urlparse(plan.login.redirect_uri.replace("{port}", str(port)))
        try:
            redirect_port = redirect.port
        except ValueError:
            plan.problem = f"the login's redirect_uri {plan.login.redirect_uri} has an invalid port"
            return plan
        if redirect_port not in (None, port) and (is_loopback(redirect.hostname) or redirect.hostname == host):
            plan.notes.append(f"warning: the login's redirect_uri {plan.login.redirect_uri} does not "
                              f"point at port {port}; sign-in will fail")
        return plan
    if is_loopback(host):
        return plan
    if not config.no_login:
        plan.problem = (f"refusing to serve on {host or 'every interface'} without a login: configure one "
                        f"([auth] in .streamlit/secrets.toml, see {SERVING_DOC}) or pass --no-login on purpose")
        return plan
    plan.notes.append(f"warning: no login (--no-login): everyone who can reach {host}:{port} sees every page, "
                      "transcript and recording and may run SQL")
    return plan


# ============================================================================ inside Streamlit
def _st():
    import streamlit as st

    return st


def _config(config=None):
    if config is not None:
        return config
    from pipeline import load_config

    return load_config()


def configured_login() -> Login | None:
    """The login of the running app's secrets (None: no ``[auth]``). Raises ValueError when incomplete."""
    st = _st()
    if not st.secrets.load_if_toml_exists():
        return None
    return read_login(st.secrets.get("auth"), source="the secrets")


def _user_email() -> tuple[bool, str | None, bool]:
    """(signed in, e-mail, e-mail not verified by the provider)."""
    user = _st().user
    if not getattr(user, "is_logged_in", False):
        return False, None, False
    email = user.get("email")
    return True, (str(email) if email else None), user.get("email_verified") is False


@dataclass(frozen=True)
class Access:
    role: str | None
    """``analyst``, ``viewer`` or None (show nothing)."""
    why: str
    """What decided: 'open' (no login), 'login', 'signed-out', 'refused', 'unverified', 'exposed', 'broken'."""
    email: str | None = None
    detail: str = ""


def current_access(config=None) -> Access:
    """Who is looking, without drawing anything."""
    config = _config(config)
    try:
        login = configured_login()
    except ValueError as exc:
        return Access(None, "broken", detail=str(exc))
    if login is None:
        address = _st().get_option("server.address")
        if is_loopback(address) or config.no_login:
            return Access(ANALYST, "open", detail="loopback" if is_loopback(address) else "no-login")
        return Access(None, "exposed", detail=str(address or "every interface"))
    signed_in, email, unverified = _user_email()
    if not signed_in:
        return Access(None, "signed-out")
    if unverified:
        return Access(None, "unverified", email)
    role = role_for(email, config)
    return Access(role, "login" if role else "refused", email)


def current_role(config=None) -> str | None:
    return current_access(config).role


def may_export(config=None) -> bool:
    """Downloads (CSV, JSON, Parquet, PDF) are for analysts."""
    return current_role(config) == ANALYST


def _page_key(page) -> str:
    return str(getattr(page, "url_path", "") or getattr(page, "title", "")).strip("/").lower()


def allowed_pages(pages: Sequence, config=None) -> list:
    """The pages this session may see, for ``st.navigation``. Draws the login screen, the refusal or the
    sidebar's identity line as needed, and stops the script when nothing may be shown."""
    st = _st()
    access = current_access(config)
    if access.role is None:
        _closed(st, access)
        st.stop()
    if access.why == "open":
        st.sidebar.caption("No login: served on this machine only, everyone is an analyst."
                           if access.detail == "loopback" else
                           "No login (started with --no-login): everyone who can reach it is an analyst.")
    else:
        st.sidebar.text(f"{access.email} · {access.role}")
        st.sidebar.button("Log out", on_click=st.logout, key="emotivoice_logout")
    if access.role == ANALYST:
        return list(pages)
    return [p for p in pages if _page_key(p) not in ANALYST_PAGES]


def require(role: str = ANALYST, config=None) -> None:
    """Stop a page's script unless the session has ``role`` (for pages run outside ``app.py``)."""
    st = _st()
    access = current_access(config)
    if access.role == ANALYST or access.role == role:
        return
    if access.role is None:
        _closed(st, access)
    else:
        st.warning("This page is for analysts.")
    st.stop()


def _closed(st, access: Access) -> None:
    """What a session that may see nothing gets: one screen, one reason."""
    st.title("EmotiVoice")
    if access.why == "signed-out":
        login = configured_login()
        st.write("Sign in to see the dashboard.")
        for provider in login.providers if login else ():
            label = "Log in" if provider == "default" else f"Log in with {provider}"
            st.button(label, on_click=st.login, args=(provider,), key=f"emotivoice_login_{provider}",
                      type="primary")
        return
    if access.why in ("refused", "unverified"):
        reason = ("This account is not allowed to use this dashboard." if access.why == "refused"
                  else "The sign-in provider has not verified this account's e-mail address.")
        logger.warning("dashboard: refused %s (%s)", access.email or "an account without e-mail", access.why)
        st.error(reason)
        st.text(f"Signed in as: {access.email or '(no e-mail address given by the provider)'}")
        st.button("Log out", on_click=st.logout, key="emotivoice_logout")
        return
    if access.why == "exposed":
        logger.error("dashboard: served on %s without a login; showing nothing", access.detail)
        st.error(f"This dashboard is served on a network address without a login, so it shows nothing. "
                 f"Configure a login or start it with --no-login on purpose (see {SERVING_DOC}).")
        return
    logger.error("dashboard: login configuration unusable: %s", access.detail)
    st.error("The login configuration is incomplete, so the dashboard shows nothing.")
    st.text(access.detail)
