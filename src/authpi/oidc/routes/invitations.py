"""The hosted invitation page: ``GET|POST /{issuer_id}/invitations/{token}`` (the link in the
invitation email). The invitee accepts once signed in as the invited address (signing in or up
first through the issuer's own sign-in pages), or declines. A used, revoked, declined or expired
invitation, or one of an organization that is no longer active, only shows that it cannot be used."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import _l
from authpi.oidc.browser import Csrf
from authpi.oidc.context import load_issuer, parse_form, runtime
from authpi.oidc.pages import message, page_url, rate_limited, redirect, render
from authpi.oidc.portal import client as portal_client
from authpi.oidc.routes import Routes
from authpi.oidc.routes.authorize import current_sign_in
from authpi.services import invitations
from authpi.services.errors import Conflict

router = Routes()
UNUSABLE = _l("This invitation can no longer be used. Ask for a new one if you still want to join.")
FORM_LIMIT = 4 * 1024


@router.get("/{issuer_id}/invitations/{token}")
@router.post("/{issuer_id}/invitations/{token}")
async def invitation_page(issuer_id: str, request: Request) -> Response:
    rt = runtime(request)
    token = str(request.path_params["token"])
    post = request.method == "POST"
    async with rt.sessions() as session:
        issuer = await load_issuer(session, issuer_id)
        limited = await rate_limited(request, rt, issuer, "login", _l("Too many attempts. Wait and retry."))
        if limited is not None:
            return limited
        csrf = Csrf(rt, request)
        form = {k: v[0] for k, v in parse_form(await request.body(), FORM_LIMIT).items()} if post else {}
        if post and not csrf.valid(form.get("csrf")):
            return message(
                request, rt, issuer, _l("Please try again"), _l("Your form expired. Go back and retry."), 403
            )
        found = await invitations.by_token(session, issuer.id, token)
        if (
            found is None
            or invitations.effective_status(found[0]) != "pending"
            or found[1].status != "active"
        ):
            return message(request, rt, issuer, _l("Invitation unavailable"), UNUSABLE, 410)
        invitation, org = found
        signed_in = await current_sign_in(request, session, issuer)
        user = signed_in[1] if signed_in else None
        is_invitee = user is not None and user.username_key == invitation.email_invited
        here = f"/{issuer.id}/invitations/{token}"
        choice = form.get("choice")
        if choice == "decline":
            if not await invitations.decline(session, invitation):
                return message(request, rt, issuer, _l("Invitation unavailable"), UNUSABLE, 410)
            await session.commit()
            text = _l("You declined the invitation to %(organization)s.").format(
                organization=org.name or org.id
            )
            return message(request, rt, issuer, _l("Invitation declined"), text, 200)
        if choice == "sign_in" or (choice == "accept" and not is_invitee):
            request_id = await portal_client.sign_in_request(
                session, issuer, back_to=here, invited_email=invitation.email_invited
            )
            return redirect(page_url(issuer, "login", request_id) + f"&login_hint={invitation.email_invited}")
        if choice == "accept" and user is not None:
            try:
                accepted = await invitations.accept(session, invitation, org, user.id)
            except Conflict as exc:
                await session.rollback()
                return message(request, rt, issuer, _l("Cannot join"), exc.description, 409)
            if not accepted:
                return message(request, rt, issuer, _l("Invitation unavailable"), UNUSABLE, 410)
            await session.commit()
            text = _l("You are now a member of %(organization)s. You can close this page.").format(
                organization=org.name or org.id
            )
            return message(request, rt, issuer, _l("Welcome aboard"), text, 200)
        inviter = (invitation.inviter or {}).get("name") or _l("An administrator")
        return render(
            request,
            rt,
            issuer,
            csrf,
            "invitation.html",
            action=here,
            org_name=org.name or org.id,
            inviter=inviter,
            email=invitation.email_invited,
            message=invitation.message or org.invitation_message,
            signed_in_as=user.username if user else None,
            is_invitee=is_invitee,
        )
