"""The routes every upstream method shares.

* ``POST /{issuer_id}/social/{method_id}/start``: the provider's button. A fresh state, nonce and
  PKCE verifier are kept server-side, bound to the pending authorization request and to this
  browser, and the browser goes to the provider.
* ``GET /{issuer_id}/social/{method_id}/callback``: the provider's answer. The state must be one
  this browser started (spent once, within ten minutes) for a method whose callback is this path;
  the code is exchanged with the method's credentials and the PKCE verifier, the identity read
  (the ID token checked against the nonce) and mapped onto a user (``accounts``).
* ``POST …/callback``: ``response_mode=form_post`` (Apple). A cross-site POST carries no
  ``SameSite=Lax`` cookie, so the answer is turned into the GET above (a top-level navigation,
  which does carry them) and checked there.
* ``POST /{issuer_id}/social/decline``: the user declines ``account_linking_required``; the client
  gets that error.

Failures end on a page that says what went wrong (or an OAuth error for the client), never a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import _l
from authpi.oidc import authorization
from authpi.oidc.context import issuer_url, load_issuer, parse_form, runtime
from authpi.oidc.pages import EXPIRED, message, rate_limited, redirect
from authpi.oidc.routes import Routes
from authpi.oidc.signin import flow as flows
from authpi.oidc.signin import registry
from authpi.oidc.signin.flow import SIGN_IN_UNAVAILABLE, TOO_MANY, Flow
from authpi.oidc.upstream import accounts, pending
from authpi.oidc.upstream.connection import Connection
from authpi.oidc.upstream.http import UpstreamError, client
from authpi.oidc.upstream.provider import Context, Identity, same_path
from authpi.oidc.upstream.strategy import UpstreamStrategy
from authpi.runtime import Runtime
from authpi.services import auth_methods
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.upstream import UpstreamRequest

log = logging.getLogger("authpi.upstream")
router = Routes()
CALLBACK_FIELDS = {
    "state": 128,
    "code": 4096,
    "error": 128,
    "error_description": 500,
    "user": 2048,
    "iss": 2000,
}
FORM_LIMIT = 16 * 1024


def redirect_uri(rt: Runtime, method: AuthMethod) -> str:
    """Where the provider sends the user back: the method's ``redirect_uri`` setting when it has
    one (``oauth2`` presets, whose URL is registered before the method exists), else its own
    callback URL."""
    configured = method.settings.get("redirect_uri")
    if isinstance(configured, str) and configured:
        return configured
    return f"{issuer_url(rt, method.issuer_id)}/social/{method.id}/callback"


def context(rt: Runtime, settings: dict[str, Any], secrets: dict[str, Any], redirect_to: str) -> Context:
    return Context(
        http=client(allow_private=rt.settings.allow_private_networks),
        settings=settings,
        secrets=secrets,
        redirect_uri=redirect_to,
        timeout=rt.settings.upstream_timeout,
        rewrites=rt.settings.upstream_url_rewrites,
    )


def method_connection(rt: Runtime, method: AuthMethod, strategy: UpstreamStrategy) -> Connection:
    """An auth method's provider as a connection: its button's identity goes through ``accounts``."""

    async def sign_in(request: Request, flow: Flow, identity: Identity, tokens: dict[str, Any]) -> Response:
        return await accounts.sign_in(request, flow, method, strategy, identity, tokens)

    secrets = auth_methods.secrets_of(rt.secretbox, method)
    ctx = context(rt, method.settings, secrets, redirect_uri(rt, method))
    return Connection(method.name, strategy.provider, ctx, sign_in, method_id=method.id)


async def _upstream_method(
    session: AsyncSession, issuer_id: str, method_id: str | None
) -> tuple[AuthMethod, UpstreamStrategy] | None:
    if method_id is None:
        return None
    picked = await registry.method_of(session, issuer_id, method_id)
    if picked is None or not isinstance(picked[1], UpstreamStrategy):
        return None
    method, strategy = picked
    if not (method.enabled_login or method.enabled_signup) or not isinstance(strategy, UpstreamStrategy):
        return None
    return method, strategy


def _failed(request: Request, flow: Flow, name: str, reason: str, status: int = 502) -> Response:
    log.warning("upstream sign-in failed: %s: %s", name, reason)
    text = _l(
        "Signing in with %(method)s did not work: %(reason)s. Go back and retry, or sign in another way."
    ).format(method=name, reason=reason)
    return flow.message(request, _l("%(method)s sign-in failed").format(method=name), text, status)


async def go_upstream(request: Request, flow: Flow, connection: Connection) -> Response:
    """Send the browser to ``connection``'s provider with a fresh state, nonce and PKCE challenge
    (kept server-side, bound to this sign-in and this browser): the button of an upstream method,
    or home-realm discovery to an organization's SSO connection."""
    rt, session = flow.rt, flow.session
    limited = await rate_limited(request, rt, flow.issuer, "login", TOO_MANY)
    if limited is not None:
        return limited
    ctx, provider = connection.context, connection.provider
    await session.commit()  # no transaction stays open while the provider is asked
    try:
        endpoint = await provider.authorization_endpoint(ctx)
    except UpstreamError as exc:
        if connection.unreachable is not None:
            log.warning("upstream provider unreachable: %s: %s", connection.name, exc.reason)
            return await connection.unreachable(request, flow, exc.reason)
        return _failed(request, flow, connection.name, exc.reason)
    started = pending.begin(
        session,
        rt.secretbox,
        issuer_id=flow.issuer.id,
        method_id=connection.method_id,
        org_id=connection.org_id,
        request_id=flow.request_id,
        browser=flow.browser(),
    )
    await session.commit()
    params = {
        "response_type": "code",
        "client_id": ctx.client_id,
        "redirect_uri": ctx.redirect_uri,
        "scope": " ".join(provider.scopes(ctx)),
        "state": started.state,
        "code_challenge": started.challenge,
        "code_challenge_method": "S256",
        **provider.extra_authorization_params(ctx),
    }
    if provider.oidc:
        params["nonce"] = started.nonce
    if provider.form_post:
        params["response_mode"] = "form_post"
    query = urlencode({k: v for k, v in params.items() if v})
    return redirect(f"{endpoint}{'&' if '?' in endpoint else '?'}{query}")


@router.post("/{issuer_id}/social/{method_id}/start")
async def start(issuer_id: str, request: Request) -> Response:
    rt = runtime(request)
    async with rt.sessions() as session:
        flow = await flows.load_sign_in(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        picked = await _upstream_method(session, flow.issuer.id, request.path_params["method_id"])
        if picked is None:
            return flow.message(request, SIGN_IN_UNAVAILABLE, _l("This sign-in method is switched off."))
        return await go_upstream(request, flow, method_connection(rt, *picked))


async def callback_form_post(issuer_id: str, request: Request) -> Response:
    """``response_mode=form_post``: turned into the GET callback (see the module's notes)."""
    form = parse_form(await request.body(), FORM_LIMIT)
    answer = {name: form[name][0][:limit] for name, limit in CALLBACK_FIELDS.items() if form.get(name)}
    return redirect(f"{request.url.path}?{urlencode(answer)}")


router.post("/{issuer_id}/social/{method_id}/callback")(callback_form_post)
router.post("/{issuer_id}/sso/{org_id}/callback")(callback_form_post)


async def _method_of_request(flow: Flow, row: UpstreamRequest) -> Connection | None:
    picked = await _upstream_method(flow.session, flow.issuer.id, row.method_id)
    return method_connection(flow.rt, *picked) if picked is not None else None


@router.get("/{issuer_id}/social/{method_id}/callback")
async def callback(issuer_id: str, request: Request) -> Response:
    return await answer(request, issuer_id, _method_of_request)


async def answer(
    request: Request,
    issuer_id: str,
    connection_of: Callable[[Flow, UpstreamRequest], Awaitable[Connection | None]],
) -> Response:
    """The provider's answer at a callback: the state must be one this browser started (spent once,
    within ten minutes) for the connection ``connection_of`` finds for it, whose redirect URI is
    this path; the code is exchanged with its credentials and the PKCE verifier, the identity read
    (the ID token checked against the nonce) and handed to the connection's ``sign_in``."""
    rt = runtime(request)
    query = {name: request.query_params.get(name, "")[:limit] for name, limit in CALLBACK_FIELDS.items()}
    async with rt.sessions() as session:
        issuer = await load_issuer(session, issuer_id)
        # Spent before anything else, and committed before the provider is called: a state answers
        # once, and no write transaction stays open across the network.
        spent = await pending.spend(session, rt.secretbox, issuer.id, query["state"])
        await session.commit()
        if spent is None:
            return message(request, rt, issuer, _l("Sign-in expired"), EXPIRED)
        flow = await flows.load_sign_in(
            request, session, issuer_id, post=False, request_id=spent.row.request_id
        )
        if isinstance(flow, Response):
            return flow
        if flow.browser() != spent.row.browser:
            return flow.expired(request)  # started in another browser
        connection = await connection_of(flow, spent.row)
        if connection is None:
            return flow.message(request, SIGN_IN_UNAVAILABLE, _l("This sign-in method is switched off."))
        ctx, name = connection.context, connection.name
        if not same_path(ctx.redirect_uri, request.url.path):
            return flow.expired(request)  # another method's callback (a mix-up)
        if query["error"]:
            if query["error"] == "access_denied":
                text = _l("Signing in with %(method)s was cancelled. Go back to choose another way.").format(
                    method=name
                )
                return flow.message(request, _l("Sign-in cancelled"), text, 400)
            return _failed(request, flow, name, f"{name} answered {query['error']!r}", 400)
        if not query["code"]:
            return _failed(request, flow, name, "the answer carries no authorization code", 400)
        provider = connection.provider
        await session.commit()  # no transaction stays open while the provider is asked
        try:
            expected_iss = await provider.issuer(ctx)
            if query["iss"] and expected_iss is not None and query["iss"] != expected_iss:
                raise UpstreamError("the answer comes from another issuer")  # RFC 9207
            tokens = await provider.exchange(ctx, query["code"], spent.verifier)
            identity = await provider.identity(ctx, tokens, spent.nonce, query)
        except UpstreamError as exc:
            return _failed(request, flow, name, exc.reason)
        return await connection.sign_in(request, flow, identity, tokens)


@router.post("/{issuer_id}/social/decline")
async def decline(issuer_id: str, request: Request) -> Response:
    """The user would rather not link: the client learns ``account_linking_required``."""
    rt = runtime(request)
    async with rt.sessions() as session:
        flow = await flows.load_sign_in(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        if flow.progress.link is None or not await authorization.forget(session, flow.request_id):
            return flow.expired(request)
        await session.commit()
        description = "The account must be linked by signing in to it first"
        return redirect(
            authorization.error_redirect(
                flow.params.redirect_uri,
                flow.params.state,
                accounts.LINKING_REQUIRED,
                description,
                issuer_url(rt, flow.issuer.id),
            )
        )
