"""The hosted pages after sign-in (decision 21): consent, account and organization selection."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import _l
from authpi.oidc import authorization
from authpi.oidc import organizations as org_rules
from authpi.oidc.context import issuer_url, runtime
from authpi.oidc.pages import proceed, redirect
from authpi.oidc.routes import Routes
from authpi.oidc.routes.authorize import current_sign_in
from authpi.oidc.signin import flow as flows
from authpi.services import organizations as org_service

router = Routes()
# What the consent page says each standard scope lets the application do (others show their name).
SCOPE_TEXTS = {
    "openid": _l("Know who you are"),
    "profile": _l("See your name and profile"),
    "email": _l("See your email address"),
    "phone": _l("See your phone number"),
    "address": _l("See your postal address"),
    "offline_access": _l("Stay connected while you are away"),
}


@router.get("/{issuer_id}/consent")
@router.post("/{issuer_id}/consent")
async def consent(issuer_id: str, request: Request) -> Response:
    post = request.method == "POST"
    async with runtime(request).sessions() as session:
        flow = await flows.load(request, session, issuer_id, post=post)
        if isinstance(flow, Response):
            return flow
        signed_in = await current_sign_in(request, session, flow.issuer)
        if signed_in is None:
            return redirect(flow.page_url("login"))
        op, user = signed_in
        if not post:
            return flow.render(
                request,
                "consent.html",
                action=f"/{flow.issuer.id}/consent",
                client_name=flow.client.name,
                username=user.username,
                scopes=[{"name": s, "text": SCOPE_TEXTS.get(s)} for s in flow.params.scope],
            )
        if flow.form.get("decision") != "allow":
            await authorization.forget(session, flow.request_id)
            await session.commit()
            iss = issuer_url(flow.rt, flow.issuer.id)
            return redirect(
                authorization.error_redirect(
                    flow.params.redirect_uri,
                    flow.params.state,
                    "access_denied",
                    "The user denied access",
                    iss,
                )
            )
        await authorization.record_consent(session, flow.issuer, user.id, flow.client.id, flow.params.scope)
        flow.params.prompt = [p for p in flow.params.prompt if p != "consent"]
        return await proceed(
            request, flow.rt, session, flow.issuer, flow.client, flow.params, flow.request_id, op, user
        )


@router.get("/{issuer_id}/select-account")
@router.post("/{issuer_id}/select-account")
async def select_account(issuer_id: str, request: Request) -> Response:
    post = request.method == "POST"
    async with runtime(request).sessions() as session:
        flow = await flows.load(request, session, issuer_id, post=post)
        if isinstance(flow, Response):
            return flow
        signed_in = await current_sign_in(request, session, flow.issuer)
        if signed_in is None or (post and flow.form.get("choice") == "other"):
            return redirect(flow.page_url("login"))
        op, user = signed_in
        if not post:
            return flow.render(
                request,
                "select_account.html",
                action=f"/{flow.issuer.id}/select-account",
                username=user.username,
            )
        return await proceed(
            request, flow.rt, session, flow.issuer, flow.client, flow.params, flow.request_id, op, user
        )


@router.get("/{issuer_id}/select-organization")
@router.post("/{issuer_id}/select-organization")
async def select_organization(issuer_id: str, request: Request) -> Response:
    """The hosted organization picker: a client that requires a selected organization, a user in
    several. The choice must be one of the user's (visible) memberships."""
    post = request.method == "POST"
    async with runtime(request).sessions() as session:
        flow = await flows.load(request, session, issuer_id, post=post)
        if isinstance(flow, Response):
            return flow
        signed_in = await current_sign_in(request, session, flow.issuer)
        if signed_in is None:
            return redirect(flow.page_url("login"))
        op, user = signed_in
        choices = await org_rules.visible(session, flow.client, user.id)
        chosen = flow.form.get("org") if post else None
        if chosen is None or chosen not in {m.org_id for m in choices}:
            names = await org_service.names(session, [m.org_id for m in choices])
            return flow.render(
                request,
                "select_organization.html",
                action=f"/{flow.issuer.id}/select-organization",
                client_name=flow.client.name,
                choices=[{"id": m.org_id, "name": names.get(m.org_id)} for m in choices],
            )
        flow.params.org = chosen
        # Kept with the request: a consent page after this one continues with the same choice.
        await authorization.save_params(session, flow.request_id, flow.params)
        return await proceed(
            request, flow.rt, session, flow.issuer, flow.client, flow.params, flow.request_id, op, user
        )
