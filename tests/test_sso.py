"""Single sign-on end to end: the app's "Sign in with single sign-on" against a small
local OIDC provider (discovery, authorize, token, JWKS), in a real browser."""

import json
import re
import time
import urllib.parse
from pathlib import Path

import pytest

from reviewqueue import queues, store, users

from .conftest import CHROMIUM, LocalServer, free_port, quiet_handler, streamlit_app

ROOT = Path(__file__).parent.parent

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium")]


class Provider(LocalServer):
    """Just enough OpenID Connect for the authorization-code flow."""

    def __init__(self, email: str):
        from joserfc.jwk import RSAKey

        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig", "alg": "RS256"})
        self.email, self.codes = email, {}
        outer = self

        class Handler(quiet_handler()):
            def _json(self, body, status=200):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                q = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/.well-known/openid-configuration":
                    return self._json(
                        {
                            "issuer": outer.base,
                            "authorization_endpoint": outer.base + "/authorize",
                            "token_endpoint": outer.base + "/token",
                            "jwks_uri": outer.base + "/jwks",
                            "userinfo_endpoint": outer.base + "/userinfo",
                            "response_types_supported": ["code"],
                            "subject_types_supported": ["public"],
                            "id_token_signing_alg_values_supported": ["RS256"],
                        }
                    )
                if url.path == "/jwks":
                    return self._json({"keys": [outer.key.as_dict(private=False)]})
                if url.path == "/authorize":
                    code = f"code-{len(outer.codes)}"
                    outer.codes[code] = (q.get("nonce"), q["client_id"])
                    target = (
                        q["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": q["state"]})
                    )
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.end_headers()
                    return None
                if url.path == "/userinfo":
                    return self._json({"sub": "maria-1", "email": outer.email})
                return self._json({"error": "not found"}, 404)

            def do_POST(self):
                from joserfc import jwt

                form = dict(
                    urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode())
                )
                nonce, client_id = outer.codes.pop(form.get("code"), (None, None))
                if client_id is None:
                    return self._json({"error": "invalid_grant"}, 400)
                now = int(time.time())
                claims = {
                    "iss": outer.base,
                    "sub": "maria-1",
                    "aud": client_id,
                    "iat": now,
                    "exp": now + 600,
                    "email": outer.email,
                    "email_verified": True,
                    "name": "Maria",
                }
                if nonce:
                    claims["nonce"] = nonce
                token = jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, outer.key)
                return self._json(
                    {"access_token": "at", "token_type": "Bearer", "expires_in": 600, "id_token": token}
                )

        super().__init__(Handler)
        self.start()


@pytest.fixture
def sso_app(tmp_path):
    provider = Provider("maria@example.com")
    url = f"sqlite:///{tmp_path / 'sso.db'}"
    engine = store.make_engine(url)
    store.upgrade(engine)
    users.add("maria", role="reviewer", email="maria@example.com", engine=engine)
    queues.create("support", engine=engine)
    engine.dispose()
    port = free_port()
    site = tmp_path / "site"
    (site / ".streamlit").mkdir(parents=True)
    (site / ".streamlit" / "secrets.toml").write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        'cookie_secret = "test-cookie-secret-test-cookie-secret"\n'
        'client_id = "reviewqueue"\nclient_secret = "s3cret"\n'
        f'server_metadata_url = "{provider.base}/.well-known/openid-configuration"\n'
    )
    with streamlit_app(url, port=port, cwd=site) as base:
        yield base, provider
    provider.close()


def test_single_sign_on_maps_the_identity_to_a_user(browser, sso_app):
    from playwright.sync_api import expect

    base, provider = sso_app
    page = browser.new_page()
    page.goto(base)
    page.get_by_role("link", name="Sign in with single sign-on").click()
    expect(page.get_by_text("Signed in as maria (reviewer)")).to_be_visible(timeout=30_000)
    assert provider.codes == {}  # the code was exchanged at the token endpoint
    page.close()


def test_single_sign_on_without_a_user_is_refused(browser, sso_app):
    from playwright.sync_api import expect

    base, provider = sso_app
    provider.email = "stranger@example.com"
    page = browser.new_page()
    page.goto(base)
    page.get_by_role("link", name="Sign in with single sign-on").click()
    expect(page.get_by_text("has no reviewqueue user")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Signed in as")).to_have_count(0)
    page.close()


def test_the_identity_is_handed_over_once_and_the_session_rules_apply(browser, sso_app):
    """After single sign-on the session is reviewqueue's: signing out ends it (the
    identity cookie is gone too), and the audit log has the sign-in and the sign-out."""
    from playwright.sync_api import expect

    base, provider = sso_app
    context = browser.new_context()
    page = context.new_page()
    page.goto(base + "/browse")
    page.get_by_role("link", name="Sign in with single sign-on").click()
    expect(page).to_have_url(re.compile(r"/browse$"), timeout=30_000)  # back to the page asked for
    expect(page.get_by_text("Signed in as maria (reviewer)")).to_be_visible(timeout=30_000)
    names = {c["name"] for c in context.cookies()}
    assert "rq_session" in names and "_streamlit_user" not in names and "rq_next" not in names
    page.get_by_test_id("rq-sign-out").click()
    expect(page.get_by_text("You signed out.")).to_be_visible(timeout=30_000)
    page.goto(base + "/review")
    expect(page.get_by_role("link", name="Sign in with single sign-on")).to_be_visible(timeout=30_000)
    context.close()
