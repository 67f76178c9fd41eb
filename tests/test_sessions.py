"""Review-app sessions (``sessions.py``) and the routes beside the pages (``ui/routes.py``):
the sign-in form, the session cookie, the gate in front of every page, sign-out and
export downloads, over HTTP as a browser meets them (the browser tests in
test_browser.py run the same routes inside ``streamlit run``)."""

from datetime import timedelta

import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from reviewqueue import claims, export, ingest, queues, sessions, store, users
from reviewqueue.models import UiSession
from reviewqueue.ui import routes

from .conftest import item


@pytest.fixture
def people(engine):
    users.add("rita", role="reviewer", password="rita-password", engine=engine)
    users.add("lena", role="lead", password="lena-password", engine=engine)
    queues.create("support", {"threshold": 0.8, "audit_rate": 0.0}, engine=engine)
    return engine


def _page(request):
    return PlainTextResponse(f"page {request.url.path}")


@pytest.fixture
def web(people):
    """The routes and the gate around stand-in pages, as ``server.py`` serves them."""
    site = Starlette(
        routes=[*routes.routes, Route("/", _page), Route("/{name}", _page)],
        middleware=routes.middleware,
    )
    with TestClient(site, base_url="http://review.test", follow_redirects=False) as client:
        yield client


def sign_in(web, name="rita", password=None, next_path="/"):
    return web.post(
        "/rq/sign-in",
        data={"username": name, "password": password or f"{name}-password", "next": next_path},
        headers={"Origin": "http://review.test"},
    )


# --- sessions ---------------------------------------------------------------------------


def test_a_session_lives_until_signed_out_and_only_its_hash_is_stored(people):
    token = sessions.start("rita", client="10.0.0.1", engine=people)
    account = sessions.resume(token, engine=people)
    assert (account.name, account.role) == ("rita", "reviewer")
    with store.read(people) as tx:
        [row] = tx.session.execute(select(UiSession)).scalars().all()
    assert token not in (row.id_hash, row.user, row.client)
    assert sessions.resume(token + "x", engine=people) is None
    assert sessions.resume("x" * 300, engine=people) is None
    assert sessions.end(token, engine=people) == "rita"
    assert sessions.resume(token, engine=people) is None
    assert sessions.why_not(token, engine=people) == "You signed out."
    assert sessions.end(token, engine=people) is None  # twice: nothing more to end


def test_a_changed_role_applies_at_once_and_deactivation_ends_every_session(people):
    first, second = (sessions.start("rita", engine=people) for _ in range(2))
    users.update("rita", role="lead", engine=people)
    assert sessions.resume(first, engine=people).role == "lead"
    users.update("rita", active=False, engine=people)
    assert sessions.resume(first, engine=people) is None and sessions.resume(second, engine=people) is None
    assert "not active" in sessions.why_not(second, engine=people)
    users.update("rita", active=True, engine=people)
    assert sessions.resume(first, engine=people) is None  # ended, not merely hidden


def test_idle_sessions_and_long_sessions_end(people, fake_clock, monkeypatch):
    token = sessions.start("rita", engine=people)
    for _ in range(5):  # used every 50 minutes: alive (idle limit 60 minutes)
        fake_clock.advance(50 * 60)
        assert sessions.resume(token, engine=people) is not None
    fake_clock.advance(61 * 60)
    assert sessions.resume(token, engine=people) is None
    assert "inactivity" in sessions.why_not(token, engine=people)

    token = sessions.start("rita", engine=people)
    for _ in range(13):  # used all day: ends at its 12 hours
        assert sessions.resume(token, engine=people) is not None
        fake_clock.advance(55 * 60)
    assert sessions.resume(token, engine=people) is not None  # 11 h 55 min
    fake_clock.advance(10 * 60)
    assert sessions.resume(token, engine=people) is None
    assert "maximum length" in sessions.why_not(token, engine=people)


# --- the sign-in page and the gate ------------------------------------------------------


def test_a_page_without_a_session_goes_to_sign_in_and_comes_back_after(web):
    r = web.get("/review?queue=support")
    assert r.status_code == 303
    assert r.headers["location"] == "/rq/sign-in?next=%2Freview%3Fqueue%3Dsupport"
    page = web.get(r.headers["location"])
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert 'name="next" value="/review?queue=support"' in page.text
    assert '<input id="username" name="username" autocomplete="username" value="" required\n autofocus>' in (
        page.text
    )
    r = sign_in(web, next_path="/review?queue=support")
    assert r.status_code == 303 and r.headers["location"] == "/review?queue=support"
    assert web.get("/review?queue=support").text == "page /review"
    # Signed in already: the sign-in page sends the reviewer on.
    assert web.get("/rq/sign-in?next=/browse").headers["location"] == "/browse"
    # Streamlit's own endpoints are not pages: they answer without a session.
    web.cookies.clear()
    assert web.get("/_stcore/health").status_code != 303


def test_the_session_cookie_is_http_only_lax_and_secure_behind_https(web, monkeypatch):
    r = sign_in(web)
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{sessions.COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Path=/" in cookie and "Secure" not in cookie and "Max-Age=43200" in cookie
    token = web.cookies[sessions.COOKIE]
    assert token not in r.headers["location"]

    # Behind a trusted proxy that says https, the cookie is Secure; an untrusted client
    # saying so is not believed.
    forwarded = {"Origin": "http://review.test", "X-Forwarded-Proto": "https"}
    form = {"username": "rita", "password": "rita-password", "next": "/"}
    assert "Secure" not in web.post("/rq/sign-in", data=form, headers=forwarded).headers["set-cookie"]
    monkeypatch.setenv("REVIEWQUEUE_TRUSTED_PROXIES", "127.0.0.0/8")
    from reviewqueue.settings import get_settings

    get_settings.cache_clear()
    site = web.app
    with TestClient(site, base_url="http://review.test", client=("127.0.0.1", 5000)) as proxied:
        r = proxied.post("/rq/sign-in", data=form, headers=forwarded, follow_redirects=False)
    assert "Secure" in r.headers["set-cookie"]


def test_wrong_passwords_keep_the_name_say_why_and_set_no_cookie(web):
    r = sign_in(web, password="wrong")
    assert r.status_code == 401 and "Wrong username or password." in r.text
    assert 'value="rita"' in r.text and "set-cookie" not in r.headers
    # The password box has the cursor when the name is kept.
    assert 'type="password" autocomplete="current-password" required\n autofocus' in r.text
    for _ in range(6):
        r = sign_in(web, password="wrong")
    assert r.status_code == 429 and "too many failed sign-ins" in r.text


def test_what_the_page_echoes_is_escaped(web):
    r = sign_in(web, name='<img src=x onerror=alert(1)>"', password="x", next_path='/"><script>x</script>')
    assert "<img" not in r.text and "&lt;img src=x onerror=alert(1)&gt;&quot;" in r.text
    assert "<script>x" not in r.text
    assert r.headers["content-security-policy"].startswith("default-src 'self'")


@pytest.mark.parametrize(
    "asked",
    [
        "https://evil.example/",
        "//evil.example/x",
        "evil",
        "/\\evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
    ],
)
def test_after_sign_in_the_browser_stays_on_this_site(web, asked):
    r = sign_in(web, next_path=asked)
    assert r.status_code == 303
    assert r.headers["location"] == "/"


def test_a_sign_in_form_posted_from_another_site_is_refused(web):
    r = web.post(
        "/rq/sign-in",
        data={"username": "rita", "password": "rita-password", "next": "/"},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403 and "set-cookie" not in r.headers


def test_signing_out_ends_the_session_and_gives_the_held_items_back(web, people):
    ingest.submit_many([item(i, confidence=0.1) for i in range(2)], engine=people)
    sign_in(web)
    token = web.cookies[sessions.COOKIE]
    held = claims.claim_next("support", "rita", engine=people)
    assert held is not None
    r = web.get("/rq/sign-out")
    assert r.status_code == 303 and r.headers["location"] == "/rq/sign-in?why=signed-out"
    assert f'{sessions.COOKIE}=""' in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
    assert sessions.resume(token, engine=people) is None
    # The item is pending again at once, for anyone (nobody waits for a lease to end).
    assert claims.claim_next("support", "lena", engine=people).id == held.id
    assert "You signed out." in web.get("/rq/sign-in?why=signed-out").text
    # An old copy of the cookie opens nothing.
    web.cookies.set(sessions.COOKIE, token)
    assert web.get("/review").status_code == 303


def test_a_deactivated_reviewer_is_stopped_at_the_next_page_load(web, people):
    sign_in(web)
    assert web.get("/review").status_code == 200
    users.update("rita", active=False, engine=people)
    r = web.get("/review")
    assert r.status_code == 303
    assert "Your account is not active any more." in web.get(r.headers["location"]).text


def test_single_sign_on_without_an_identity_goes_back_to_sign_in(web):
    r = web.get("/rq/sso?next=/review")
    assert r.status_code == 303 and r.headers["location"] == "/rq/sign-in?why=sso-failed"
    web.cookies.set("_streamlit_user", "forged")
    assert web.get("/review").headers["location"] == "/rq/sso?next=%2Freview"
    assert web.get("/rq/sso?next=/review").headers["location"] == "/rq/sign-in?why=sso-failed"


# --- export downloads -------------------------------------------------------------------


def test_export_downloads_follow_the_export_policy(web, people, tmp_path, fake_clock):
    from reviewqueue import review

    ingest.submit_many([item(0, confidence=0.1, output="the answer")], engine=people)
    held = claims.claim_next("support", "rita", engine=people)
    review.decide(held.id, "rita", {"verdict": "approve"}, engine=people)
    fake_clock.advance(5)
    export.export(
        tmp_path / "out",
        week_spec=None,
        since=fake_clock.now() - timedelta(days=1),
        until=fake_clock.now(),
        engine=people,
    )
    [run] = export.runs(engine=people)

    assert web.get(f"/rq/exports/{run.id}").status_code == 401
    sign_in(web)  # a reviewer: exports are leads' and admins' by default
    assert web.get(f"/rq/exports/{run.id}").status_code == 403
    web.cookies.clear()
    sign_in(web, "lena")
    r = web.get(f"/rq/exports/{run.id}")
    assert r.status_code == 200 and b"the answer" in r.content
    assert r.headers["content-disposition"].startswith('attachment; filename="support-')
    assert r.headers["cache-control"] == "no-store"
    assert web.get("/rq/exports/999999").status_code == 404
    assert web.get("/rq/exports/x").status_code == 404


def test_single_sign_on_starts_sessions_for_active_users_only_and_is_audited(people):
    from reviewqueue.models import Event

    users.add("maria", role="reviewer", email="maria@example.com", engine=people)
    token = sessions.start_sso("maria@example.com", client="10.1.2.3", engine=people)
    assert sessions.resume(token, engine=people).name == "maria"
    assert sessions.start_sso("nobody@example.com", engine=people) is None
    sessions.end(token, engine=people)
    users.update("maria", active=False, engine=people)
    assert sessions.start_sso("maria@example.com", engine=people) is None
    with store.read(people) as tx:
        said = tx.session.execute(select(Event.kind, Event.after).where(Event.actor == "maria")).all()
    assert ("user.signed_in", {"client": "10.1.2.3", "via": "sso"}) in said
    assert any(kind == "user.signed_out" for kind, _ in said)
