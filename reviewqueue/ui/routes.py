"""The routes beside the review app's pages (``app.py``), served together by ``server.py``
(``reviewqueue ui``) and ``review_app.py`` (``streamlit run review_app.py``).

Why routes beside the app (docs/architecture.md, "Sessions"): a Streamlit script cannot
set a cookie, and Streamlit keeps its own session in the process that holds the
browser's websocket, so a reload, a new tab or another process signed the reviewer out.
Here the sign-in is a plain HTML form posted to ``/rq/sign-in``, which starts a session
in the database (``sessions.py``) and sets it in an ``HttpOnly`` cookie; every page load
without a live session is sent to the sign-in page first, and comes back to the page it
asked for; the script finds the account through the cookie on every run.

- ``GET /rq/sign-in``: the sign-in page (the cursor in the user name; Enter signs in);
- ``POST /rq/sign-in``: check the password, start the session, back to ``next``;
- ``GET /rq/sign-out``: end the session, give back the items held, to the sign-in page;
- ``GET /rq/sso/start``: single sign-on, through Streamlit's ``/auth/login``;
- ``GET /rq/sso``: after single sign-on, the identity's user gets a session;
- ``GET /rq/exports/{id}``: an export file, to those the export policy allows, from
  whichever review-app process the balancer picks (the files are on shared storage).
"""

from __future__ import annotations

import html
import json
import logging
import re
from pathlib import Path
from urllib.parse import quote, urlsplit

import streamlit as st
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

log = logging.getLogger("reviewqueue.ui")

SCRIPT = Path(__file__).with_name("app.py")
#: Page addresses the gate sends to sign-in when there is no session: the app's pages.
_PAGE = re.compile(r"/(?:[a-z][a-z-]{0,40})?")
_NOT_PAGES = ("/rq", "/auth", "/oauth2callback", "/healthz")


def _engine():
    from reviewqueue import store
    from reviewqueue.settings import get_settings

    return store.get_engine(get_settings().database_url)


def _settings():
    from reviewqueue.settings import get_settings

    return get_settings()


def _next_path(value: str | None) -> str:
    """A page of this app to go back to: a path, never another site."""
    if not value:
        return "/"
    parts = urlsplit(value)
    # Browsers read a backslash as a slash ("/\\host" is another site) and drop tabs and newlines.
    if (
        parts.scheme
        or parts.netloc
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 32 or ord(c) == 127 for c in value)
    ):
        return "/"
    return value[:500]


def _secure(request: Request) -> bool:
    if request.url.scheme == "https":
        return True
    from reviewqueue import netaddr

    peer = request.client.host if request.client else None
    trusted = netaddr.trusted_networks(_settings().trusted_proxies or "")
    address = netaddr._address(peer)
    return (
        bool(address and netaddr._trusted(address, trusted))
        and request.headers.get("x-forwarded-proto", "").lower() == "https"
    )


def _client(request: Request) -> str | None:
    from reviewqueue import netaddr

    peer = request.client.host if request.client else None
    return netaddr.client_address(peer, request.headers.get("x-forwarded-for"), _settings().trusted_proxies)


def _with_session(response: Response, request: Request, token: str) -> Response:
    from reviewqueue import sessions

    response.set_cookie(
        sessions.COOKIE,
        token,
        max_age=_settings().ui_session_hours * 3600,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    return response


def _sso_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets.toml at all
        return False


_STYLE = """
body { font-family: "Source Sans Pro", -apple-system, "Segoe UI", sans-serif; background: #fff; color: #31333f;
       display: flex; justify-content: center; margin: 0; }
main { width: 22rem; margin-top: 12vh; }
h1 { font-size: 1.6rem; margin: 0 0 .2rem; } h2 { font-size: 1.1rem; font-weight: 400; margin: 0 0 1.4rem; }
label { display: block; font-size: .9rem; margin: .8rem 0 .3rem; }
input { width: 100%; box-sizing: border-box; padding: .5rem .6rem; font-size: 1rem; border: 1px solid #d0d3da;
        border-radius: .4rem; }
input:focus { outline: 2px solid #ff4b4b; border-color: transparent; }
button, a.button { margin-top: 1.2rem; width: 100%; padding: .55rem; font-size: 1rem; border-radius: .4rem;
         border: none; background: #ff4b4b; color: #fff; cursor: pointer; display: block; text-align: center;
         text-decoration: none; box-sizing: border-box; }
a.button { background: #fff; color: #31333f; border: 1px solid #d0d3da; }
p.note { background: #f0f2f6; padding: .6rem .8rem; border-radius: .4rem; }
p.error { background: #ffe9e9; color: #7d1a1a; padding: .6rem .8rem; border-radius: .4rem; }
"""

_MESSAGES = {
    "signed-out": "You signed out.",
    "sso-unknown": "Your single sign-on account has no reviewqueue user; ask an admin to add your e-mail.",
    "sso-failed": "Single sign-on did not finish; please try again.",
}


def _page(
    *, next_path: str, name: str = "", error: str = "", note: str = "", status: int = 200
) -> HTMLResponse:
    """The sign-in page. Everything shown that a person typed or that came from the
    request is escaped; the rest is our own wording."""
    sso = (
        f'<a class="button" href="/rq/sso/start?next={html.escape(quote(next_path))}">Sign in with single sign-on</a>'
        if _sso_configured()
        else ""
    )
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>reviewqueue · sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>
<body><main>
<h1>reviewqueue</h1><h2>Sign in</h2>
{f'<p class="note" role="status">{html.escape(note)}</p>' if note else ""}
{f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""}
<form method="post" action="/rq/sign-in">
<input type="hidden" name="next" value="{html.escape(next_path)}">
<label for="username">Username</label>
<input id="username" name="username" autocomplete="username" value="{html.escape(name)}" required
 {"" if name else "autofocus"}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required
 {"autofocus" if name else ""}>
<button type="submit">Sign in</button>
</form>
{sso}
</main></body></html>"""
    return HTMLResponse(
        body,
        status_code=status,
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'",
        },
    )


async def sign_in_page(request: Request) -> Response:
    from reviewqueue import sessions

    next_path = _next_path(request.query_params.get("next"))
    token = request.cookies.get(sessions.COOKIE)
    if token and sessions.resume(token, engine=_engine()):
        return RedirectResponse(next_path, status_code=303)  # signed in already
    note = _MESSAGES.get(request.query_params.get("why", ""), "")
    if not note and token:
        note = sessions.why_not(token, engine=_engine())
    return _page(next_path=next_path, note=note)


async def sign_in(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    from reviewqueue import sessions, users
    from reviewqueue.errors import AuthenticationFailed, RateLimited

    # A sign-in form posted from another site would sign this browser in as someone
    # else (login CSRF): the browser says where the form was.
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
        return PlainTextResponse("sign-in forms are posted from this site only", status_code=403)
    form = await request.form()
    name = str(form.get("username", ""))[:256].strip()
    password = str(form.get("password", ""))[:1024]
    next_path = _next_path(str(form.get("next", "")))
    client = _client(request)
    try:
        user = await run_in_threadpool(users.authenticate, name, password, client=client, engine=_engine())
    except RateLimited as exc:
        return _page(next_path=next_path, name=name, error=str(exc), status=429)
    except AuthenticationFailed:
        return _page(next_path=next_path, name=name, error="Wrong username or password.", status=401)
    token = await run_in_threadpool(sessions.start, user.name, client=client, engine=_engine())
    return _with_session(RedirectResponse(next_path, status_code=303), request, token)


async def sign_out(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    from reviewqueue import claims, sessions

    token = request.cookies.get(sessions.COOKIE)
    user = await run_in_threadpool(sessions.end, token, engine=_engine())
    if user:
        await run_in_threadpool(claims.release_all, user, engine=_engine())  # nobody waits for them
    response = RedirectResponse("/rq/sign-in?why=signed-out", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/")
    _forget_identity(response)
    return response


def _sso_identity(request: Request) -> dict | None:
    """The identity Streamlit's single sign-on stored (its signed cookie), if any."""
    try:
        from streamlit.web.server.server_util import get_cookie_secret
        from streamlit.web.server.starlette.starlette_app_utils import decode_signed_value
    except ImportError:  # pragma: no cover - another Streamlit
        return None
    raw = request.cookies.get("_streamlit_user")
    if not raw:
        return None
    try:
        decoded = decode_signed_value(get_cookie_secret(), "_streamlit_user", raw.encode("latin-1"))
        return json.loads(decoded) if decoded else None
    except Exception:
        return None


#: Where to go after single sign-on: Streamlit's callback always lands on "/".
_NEXT_COOKIE = "rq_next"


def _sso_provider() -> str:
    """The provider of ``[auth]``: "default" when its keys are at the top, else the first
    named one (``[auth.NAME]``)."""
    section = st.secrets["auth"]
    if "client_id" in section:
        return "default"
    return next((k for k, v in section.items() if hasattr(v, "keys")), "default")


async def sso_start(request: Request) -> Response:
    """Off to the identity provider, through Streamlit's ``/auth/login`` (which wants a
    short-lived provider token, as ``st.login()`` makes)."""
    from streamlit.user_info import generate_login_redirect_url

    if not _sso_configured():
        return RedirectResponse("/rq/sign-in", status_code=303)
    response = RedirectResponse(generate_login_redirect_url(_sso_provider()), status_code=303)
    response.set_cookie(
        _NEXT_COOKIE,
        _next_path(request.query_params.get("next")),
        max_age=600,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/rq/",
    )
    return response


async def sso(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    from reviewqueue import sessions

    next_path = _next_path(request.query_params.get("next"))
    if next_path == "/":
        next_path = _next_path(request.cookies.get(_NEXT_COOKIE))
    identity = _sso_identity(request)
    if not identity or not identity.get("is_logged_in", True) or not identity.get("email"):
        response = RedirectResponse("/rq/sign-in?why=sso-failed", status_code=303)
        _forget_identity(response)
        return response
    token = await run_in_threadpool(
        sessions.start_sso, identity["email"], client=_client(request), engine=_engine()
    )
    if token is None:
        response = RedirectResponse("/rq/sign-in?why=sso-unknown", status_code=303)
    else:
        response = _with_session(RedirectResponse(next_path, status_code=303), request, token)
    # The identity is handed over once: from here the session's limits apply (idle,
    # length, deactivation), and an ended session goes back through the provider.
    _forget_identity(response)
    response.delete_cookie(_NEXT_COOKIE, path="/rq/")
    return response


def _forget_identity(response: Response) -> None:
    for name in ("_streamlit_user", "_streamlit_user_tokens"):
        response.delete_cookie(name, path="/")


async def export_file(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    from reviewqueue import export, policies, sessions
    from reviewqueue.vocab import Role

    account = await run_in_threadpool(sessions.resume, request.cookies.get(sessions.COOKIE), engine=_engine())
    if account is None:
        return PlainTextResponse("sign in first", status_code=401)
    if not await run_in_threadpool(policies.may_export, Role(account.role), feed=False, engine=_engine()):
        return PlainTextResponse("your role may not download exports", status_code=403)
    try:
        run_id = int(request.path_params["run_id"])
    except ValueError:
        return PlainTextResponse("no such export", status_code=404)
    run = await run_in_threadpool(export.run_by_id, run_id, engine=_engine())
    if run is None or run.pending_path or not Path(run.path).is_file():
        return PlainTextResponse(
            "that export's file is not here (is the export folder shared?)", status_code=404
        )
    filename = f"{run.queue}-{Path(run.path).parent.name}-{Path(run.path).name}"
    return FileResponse(run.path, filename=filename, headers={"Cache-Control": "no-store"})


class SessionGate:
    """Pure ASGI middleware: a page load with no live session goes to the sign-in page
    first (or, after single sign-on, to the session it needs), and comes back after."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        path = scope["path"]
        if not _PAGE.fullmatch(path) or path.startswith(_NOT_PAGES):
            return await self.app(scope, receive, send)
        from starlette.concurrency import run_in_threadpool

        from reviewqueue import sessions

        request = Request(scope)
        token = request.cookies.get(sessions.COOKIE)
        if token and await run_in_threadpool(sessions.resume, token, engine=_engine()):
            return await self.app(scope, receive, send)
        query = scope.get("query_string", b"").decode("latin-1")
        here = quote(path + (f"?{query}" if query else ""), safe="")
        if request.cookies.get("_streamlit_user"):
            target = f"/rq/sso?next={here}"
        else:
            target = f"/rq/sign-in?next={here}"
        return await RedirectResponse(target, status_code=303)(scope, receive, send)


routes = [
    Route("/rq/sign-in", sign_in_page, methods=["GET"]),
    Route("/rq/sign-in", sign_in, methods=["POST"]),
    Route("/rq/sign-out", sign_out, methods=["GET"]),
    Route("/rq/sso/start", sso_start, methods=["GET"]),
    Route("/rq/sso", sso, methods=["GET"]),
    Route("/rq/exports/{run_id}", export_file, methods=["GET"]),
]

middleware = [Middleware(SessionGate)]
