"""User verifiers through the official ``authpi-admin`` 1.4.0 SDK (core-api §B.2 rows 109-116,
§C.7): TOTP enrollment and its first code, backup codes (shown once, spent once, regenerated),
verify under the lockout, rename and primary, delete, and the conventions every resource keeps
(If-Match, Idempotency-Key replay, isolation between accounts, scopes, no secret after enrollment).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pyotp
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import ApiError, ForbiddenError, NotFoundError, PreconditionFailedError
from authpi_admin.generated.models import Issuer, User
from authpi_admin.generated.resources.user_verifiers import UserVerifiersResource

from tests.core.conftest import ClientFactory, KeyMaker, assert_error_envelope

pytestmark = pytest.mark.anyio

SECRET_FIELDS = {"secret", "secret_sealed", "codes", "backup_codes", "code_digest", "public_key"}


async def new_user(admin: AuthPIAdmin, issuer: Issuer, password: str | None = None) -> User:
    body: dict[str, Any] = {"username_type": "email", "username": f"{uuid.uuid4().hex[:8]}@example.com"}
    if password:
        body["password"] = password
    return await admin.issuer(issuer.id).users.create(body)  # type: ignore[arg-type]


def api(admin: AuthPIAdmin, issuer: Issuer, user: User) -> UserVerifiersResource:
    return admin.issuer(issuer.id).user(user.id).verifiers


def fields(item: Any) -> dict[str, Any]:
    return dict(item.model_extra or {})


async def enroll(verifiers: UserVerifiersResource) -> tuple[str, pyotp.TOTP, list[str]]:
    started = await verifiers.create({"type": "totp", "name": "Phone"})
    app = pyotp.TOTP(started.secret)
    done = await verifiers.complete_enrollment({"enrollment_id": started.enrollment_id, "code": app.now()})
    assert done.success and done.verifier_id == started.enrollment_id
    return done.verifier_id, app, list(done.backup_codes or [])


def later(app: pyotp.TOTP, steps: int = 1) -> str:
    return app.at(time.time() + 30 * steps)


# --- enrollment -----------------------------------------------------------------------------------


async def test_totp_enrollment_returns_the_secret_once_and_the_first_code_confirms_it(
    admin: AuthPIAdmin, issuer: Issuer
) -> None:
    await admin.issuer(issuer.id).update({"settings": {"branding": {"name": "Acme Portal"}}})
    user = await new_user(admin, issuer)
    verifiers = api(admin, issuer, user)
    started = await verifiers.create({"type": "totp"})
    assert started.enrollment_id.startswith("vrf_") and len(started.secret) == 32
    assert started.expires_at > time.time() * 1000
    parsed = pyotp.parse_uri(started.provisioning_uri)
    assert started.provisioning_uri.startswith("otpauth://totp/")
    assert isinstance(parsed, pyotp.TOTP) and parsed.secret == started.secret
    assert parsed.issuer == "Acme Portal" and parsed.name == user.username

    pending = fields(await verifiers.get(started.enrollment_id))
    assert pending["status"] == "pending" and pending["expires_at"] == started.expires_at
    assert not SECRET_FIELDS & set(pending)

    wrong = await verifiers.complete_enrollment({"enrollment_id": started.enrollment_id, "code": "000000"})
    if not wrong.success:
        assert wrong.error == "invalid_code" and wrong.verifier_id is None and not wrong.backup_codes
    app = pyotp.TOTP(started.secret)
    done = await verifiers.complete_enrollment({"enrollment_id": started.enrollment_id, "code": app.now()})
    assert done.success and done.verifier_id == started.enrollment_id
    codes = done.backup_codes or []
    assert len(codes) == 10 and len(set(codes)) == 10 and all(len(c) == 14 for c in codes)

    listed = [fields(v) for v in (await verifiers.list()).data]
    by_type = {v["type"]: v for v in listed}
    assert set(by_type) == {"totp", "backup_codes"}  # no password on this user
    assert by_type["totp"]["status"] == "active" and by_type["totp"]["name"] == "Authenticator app"
    assert by_type["totp"]["digits"] == 6 and by_type["totp"]["period"] == 30
    assert by_type["backup_codes"]["remaining"] == 10
    assert all(not SECRET_FIELDS & set(v) for v in listed)

    # A second TOTP verifier is not the first second factor: no new backup codes.
    _, _, more = await enroll(verifiers)
    assert more == []


async def test_an_enrollment_completes_once_and_unknown_ones_are_not_found(
    admin: AuthPIAdmin, issuer: Issuer
) -> None:
    verifiers = api(admin, issuer, await new_user(admin, issuer))
    verifier_id, app, _ = await enroll(verifiers)
    with pytest.raises(ApiError) as done:
        await verifiers.complete_enrollment({"enrollment_id": verifier_id, "code": later(app)})
    assert done.value.status_code == 409
    with pytest.raises(NotFoundError):
        await verifiers.complete_enrollment({"enrollment_id": "vrf_unknown", "code": "123456"})


async def test_create_refuses_the_types_it_does_not_create_with_a_clear_400(
    admin: AuthPIAdmin, issuer: Issuer
) -> None:
    verifiers = api(admin, issuer, await new_user(admin, issuer))
    for kind, says in (
        ("passkey", "browser"),
        ("backup_codes", "regenerate"),
        ("password", "PATCH"),
        ("sms", "must be totp"),
    ):
        with pytest.raises(ApiError) as refused:
            await verifiers.create({"type": kind})
        assert refused.value.status_code == 400 and says in refused.value.error_description, kind


async def test_the_password_is_a_read_only_entry(admin: AuthPIAdmin, issuer: Issuer) -> None:
    user = await new_user(admin, issuer, password="a long enough password 1")
    verifiers = api(admin, issuer, user)
    listed = [fields(v) for v in (await verifiers.list()).data]
    assert [(v["id"], v["type"], v["read_only"]) for v in listed] == [("password", "password", True)]
    assert fields(await verifiers.get("password"))["status"] == "active"
    for attempt in (
        verifiers.delete("password"),
        verifiers.update("password", {"name": "x"}),
        verifiers.verify("password", {"code": "x"}),
    ):
        with pytest.raises(ApiError) as refused:
            await attempt
        assert refused.value.status_code == 400 and "read-only" in refused.value.error_description


# --- verify and backup codes -------------------------------------------------------------------


async def test_verify_accepts_a_totp_code_once_per_step(admin: AuthPIAdmin, issuer: Issuer) -> None:
    verifiers = api(admin, issuer, await new_user(admin, issuer))
    verifier_id, app, _ = await enroll(verifiers)
    code = later(app)
    first = await verifiers.verify(verifier_id, {"code": code})
    assert first.success and first.error is None
    replay = await verifiers.verify(verifier_id, {"code": code})
    assert not replay.success and replay.error == "invalid_code"
    wrong = await verifiers.verify(verifier_id, {"code": "12"})
    assert not wrong.success and wrong.error == "invalid_code"
    assert fields(await verifiers.get(verifier_id))["last_used_at"] is not None


async def test_backup_codes_are_spent_once_and_regenerate_replaces_them_all(
    admin: AuthPIAdmin, issuer: Issuer, server: Any
) -> None:
    user = await new_user(admin, issuer)
    verifiers = api(admin, issuer, user)
    _, _, codes = await enroll(verifiers)
    codes_id = next(
        fields(v)["id"] for v in (await verifiers.list()).data if fields(v)["type"] == "backup_codes"
    )
    spent = await verifiers.verify(codes_id, {"code": codes[0]})
    assert spent.success and spent.remaining == 9
    again = await verifiers.verify(codes_id, {"code": codes[0]})
    assert not again.success and again.error == "invalid_code" and again.remaining == 9

    current = await verifiers.get(codes_id)
    fresh = await verifiers.regenerate(codes_id, if_match=current._etag)
    assert len(fresh.codes) == 10 and not set(fresh.codes) & set(codes)
    assert fields(await verifiers.get(codes_id))["remaining"] == 10
    old = await verifiers.verify(codes_id, {"code": codes[1]})
    assert not old.success
    assert (await verifiers.verify(codes_id, {"code": fresh.codes[0]})).remaining == 9

    with pytest.raises(ApiError) as not_codes:
        totp_id = next(fields(v)["id"] for v in (await verifiers.list()).data if fields(v)["type"] == "totp")
        await verifiers.regenerate(totp_id)
    assert not_codes.value.status_code == 400

    async with httpx.AsyncClient(base_url=server.url, auth=server.api_key) as raw:
        path = f"/v1/accounts/{server.account_id}/issuers/{issuer.id}/users/{user.id}/verifiers/{codes_id}"
        events = await raw.get(
            f"/v1/accounts/{server.account_id}/events",
            params={"user_id": user.id, "event_types": "user.mfa.backup-codes.regenerated"},
        )
        assert events.status_code == 200 and len(events.json()["data"]) == 1
        assert fresh.codes[0] not in events.text and codes[0] not in events.text
        got = await raw.get(path)
        assert not any(code in got.text for code in fresh.codes)


async def test_five_failed_verifications_lock_the_factor(admin: AuthPIAdmin, issuer: Issuer) -> None:
    verifiers = api(admin, issuer, await new_user(admin, issuer))
    verifier_id, app, _ = await enroll(verifiers)
    good = later(app)
    wrong = "000000" if good != "000000" else "111111"
    for _ in range(5):
        assert (await verifiers.verify(verifier_id, {"code": wrong})).error == "invalid_code"
    locked = await verifiers.verify(verifier_id, {"code": good})
    assert not locked.success and locked.error == "locked"


# --- update, delete, conventions ---------------------------------------------------------------


async def test_update_and_delete_follow_if_match(admin: AuthPIAdmin, issuer: Issuer) -> None:
    verifiers = api(admin, issuer, await new_user(admin, issuer))
    first_id, _, _ = await enroll(verifiers)
    second_id, _, _ = await enroll(verifiers)
    first = await verifiers.get(first_id)
    renamed = await verifiers.update(first_id, {"name": "Work phone", "primary": True}, if_match=first._etag)
    assert fields(renamed)["name"] == "Work phone" and fields(renamed)["primary"] is True
    assert renamed._etag != first._etag and renamed._etag == f'"{fields(renamed)["updated_at"]}"'
    with pytest.raises(PreconditionFailedError) as stale:
        await verifiers.update(first_id, {"name": "Old"}, if_match=first._etag)
    assert stale.value.current_etag == renamed._etag
    second = await verifiers.update(second_id, {"primary": True})
    assert fields(second)["primary"] is True
    assert fields(await verifiers.get(first_id))["primary"] is False

    with pytest.raises(PreconditionFailedError):
        await verifiers.delete(first_id, if_match=first._etag)
    await verifiers.delete(first_id, if_match=(await verifiers.get(first_id))._etag)
    with pytest.raises(NotFoundError):
        await verifiers.get(first_id)
    # Deleting the last second factor removes the backup codes that stood in for it.
    await verifiers.delete(second_id)
    assert (await verifiers.list()).data == []


async def test_if_match_on_complete_enrollment_and_verify(admin: AuthPIAdmin, issuer: Issuer) -> None:
    verifiers = api(admin, issuer, await new_user(admin, issuer))
    started = await verifiers.create({"type": "totp"})
    app = pyotp.TOTP(started.secret)
    with pytest.raises(PreconditionFailedError):
        await verifiers.complete_enrollment(
            {"enrollment_id": started.enrollment_id, "code": app.now()}, if_match='"1"'
        )
    done = await verifiers.complete_enrollment(
        {"enrollment_id": started.enrollment_id, "code": app.now()}, if_match=started._etag
    )
    assert done.success
    current = await verifiers.get(started.enrollment_id)
    with pytest.raises(PreconditionFailedError):
        await verifiers.verify(started.enrollment_id, {"code": later(app)}, if_match='"1"')
    assert (
        await verifiers.verify(started.enrollment_id, {"code": later(app)}, if_match=current._etag)
    ).success


async def test_idempotent_replays_return_the_first_answer(admin: AuthPIAdmin, issuer: Issuer) -> None:
    verifiers = api(admin, issuer, await new_user(admin, issuer))
    key = str(uuid.uuid4())
    first = await verifiers.create({"type": "totp"}, idempotency_key=key)
    again = await verifiers.create({"type": "totp"}, idempotency_key=key)
    assert again.enrollment_id == first.enrollment_id and again.secret == first.secret
    assert len([v for v in (await verifiers.list()).data if fields(v)["status"] == "pending"]) == 1

    app = pyotp.TOTP(first.secret)
    body = {"enrollment_id": first.enrollment_id, "code": app.now()}
    done_key = str(uuid.uuid4())
    done = await verifiers.complete_enrollment(body, idempotency_key=done_key)
    replayed = await verifiers.complete_enrollment(body, idempotency_key=done_key)
    assert done.success and replayed.backup_codes == done.backup_codes

    codes_id = next(
        fields(v)["id"] for v in (await verifiers.list()).data if fields(v)["type"] == "backup_codes"
    )
    regen_key = str(uuid.uuid4())
    fresh = await verifiers.regenerate(codes_id, idempotency_key=regen_key)
    assert (await verifiers.regenerate(codes_id, idempotency_key=regen_key)).codes == fresh.codes
    verify_key = str(uuid.uuid4())
    spent = await verifiers.verify(codes_id, {"code": fresh.codes[0]}, idempotency_key=verify_key)
    replay = await verifiers.verify(codes_id, {"code": fresh.codes[0]}, idempotency_key=verify_key)
    assert spent.success and replay.success and replay.remaining == spent.remaining == 9


async def test_other_accounts_issuers_and_users_are_not_found(
    admin: AuthPIAdmin,
    issuer: Issuer,
    other_account: dict[str, str],
    client_for: ClientFactory,
    unique: str,
) -> None:
    user = await new_user(admin, issuer)
    verifiers = api(admin, issuer, user)
    verifier_id, _, _ = await enroll(verifiers)
    neighbour = await new_user(admin, issuer)
    with pytest.raises(NotFoundError):
        await api(admin, issuer, neighbour).get(verifier_id)
    with pytest.raises(NotFoundError):
        await api(admin, issuer, neighbour).delete(verifier_id)
    sibling = await admin.issuers.create({"name": f"sibling-{unique}"})
    with pytest.raises(NotFoundError):
        await admin.issuer(sibling.id).user(user.id).verifiers.list()
    async with client_for(other_account["key_id"], other_account["key_secret"]) as other:
        theirs = other.issuer(issuer.id).user(user.id).verifiers
        for attempt in (
            theirs.list(),
            theirs.get(verifier_id),
            theirs.create({"type": "totp"}),
            theirs.verify(verifier_id, {"code": "123456"}),
            theirs.regenerate(verifier_id),
            theirs.delete(verifier_id),
        ):
            with pytest.raises(NotFoundError):
                await attempt
    assert fields(await verifiers.get(verifier_id))["status"] == "active"


async def test_scopes_are_enforced(
    admin: AuthPIAdmin, issuer: Issuer, make_key: KeyMaker, client_for: ClientFactory
) -> None:
    user = await new_user(admin, issuer)
    verifier_id, _, _ = await enroll(api(admin, issuer, user))
    key = await make_key(["issuers.users.verifiers:read"])
    async with client_for(key.id, key.secret_plain) as reader:
        mine = reader.issuer(issuer.id).user(user.id).verifiers
        assert len((await mine.list()).data) == 2
        with pytest.raises(ForbiddenError):
            await mine.create({"type": "totp"})
        with pytest.raises(ForbiddenError):
            await mine.verify(verifier_id, {"code": "123456"})


async def test_bodies_are_bounded(admin: AuthPIAdmin, issuer: Issuer, server: Any) -> None:
    user = await new_user(admin, issuer)
    path = f"/v1/accounts/{server.account_id}/issuers/{issuer.id}/users/{user.id}/verifiers"
    async with httpx.AsyncClient(base_url=server.url, auth=server.api_key) as raw:
        for body in (
            {"type": "totp", "name": "x" * 201},
            {"type": "totp", "extra": 1},
            {"type": "t" * 33},
        ):
            response = await raw.post(
                path, content=json.dumps(body), headers={"content-type": "application/json"}
            )
            assert response.status_code in (400, 422), response.text
            assert_error_envelope(response.json())
        long_code = await raw.post(
            f"{path}/complete-enrollment", json={"enrollment_id": "vrf_x", "code": "1" * 65}
        )
        assert long_code.status_code in (400, 422)
