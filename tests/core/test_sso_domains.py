"""SSO domains of an organization (org.sso in authpi-admin): add (the TXT record to publish), verify
against a real DNS server in the test process, remove; one verified owner per issuer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError

from tests.conftest import BACKENDS, skip_without_postgres
from tests.harness import RunningServer, run_server
from tests.local_dns import dns_server

pytestmark = pytest.mark.anyio


class Resolving:
    def __init__(self, server: RunningServer, records: dict[str, list[str]]) -> None:
        self.server, self.records = server, records


@pytest.fixture(scope="module", params=BACKENDS)
def resolving(request: pytest.FixtureRequest) -> Iterator[Resolving]:
    skip_without_postgres(request.param)
    with (
        dns_server() as (records, port),
        run_server(request.param, {"AUTHPI_DNS_NAMESERVERS": f"127.0.0.1:{port}"}) as running,
    ):
        yield Resolving(running, records)


async def test_add_verify_and_remove_a_domain(resolving: Resolving) -> None:
    server = resolving.server
    async with AuthPIAdmin(api_key=server.api_key, base_url=server.url, retries=False) as admin:
        issuer = await admin.issuers.create({"name": "sso"})
        orgs = admin.issuer(issuer.id).organizations
        acme = admin.issuer(issuer.id).organization((await orgs.create({"name": "Acme"})).id)
        rival = admin.issuer(issuer.id).organization((await orgs.create({"name": "Rival"})).id)

        added = await acme.sso.add_domain({"domain": "Acme.COM."})
        assert added.domain == "acme.com" and added.txt_record_name == "_authpi-verification.acme.com"
        assert added.txt_record_value.startswith("authpi-verification=")
        assert (await acme.sso.add_domain({"domain": "acme.com"})).txt_record_value == added.txt_record_value
        with pytest.raises(ValidationError):
            await acme.sso.add_domain({"domain": "not a domain"})

        missing = await acme.sso.verify_domain("acme.com")
        assert missing.verified is False and missing.error and "does not exist" in missing.error
        resolving.records[added.txt_record_name] = ["something else"]
        wrong = await acme.sso.verify_domain("acme.com")
        assert wrong.verified is False and wrong.error
        resolving.records[added.txt_record_name] = ["something else", added.txt_record_value]
        assert (await acme.sso.verify_domain("acme.com")).verified is True

        # Another organization of the issuer may claim it, never verify it.
        claimed = await rival.sso.add_domain({"domain": "acme.com"})
        resolving.records[claimed.txt_record_name].append(claimed.txt_record_value)
        with pytest.raises(ConflictError):
            await rival.sso.verify_domain("acme.com")

        assert (await acme.sso.remove_domain("acme.com"))["domain"] == "acme.com"
        with pytest.raises(NotFoundError):
            await acme.sso.verify_domain("acme.com")
        assert (await rival.sso.verify_domain("acme.com")).verified is True

        kinds = {
            e.type
            async for e in admin.events.list_all(
                issuer_id=issuer.id,
                event_types="organization.sso.domain-created,organization.sso.domain-verified,organization.sso.domain-deleted",
            )
        }
        assert kinds == {
            "organization.sso.domain-created",
            "organization.sso.domain-verified",
            "organization.sso.domain-deleted",
        }

        reader = await admin.api_keys.create(
            {"name": "r", "restrictions": {"scopes": ["issuers.organizations:read"]}}
        )
        async with AuthPIAdmin(
            api_key=(reader.id, reader.secret_plain), base_url=server.url, retries=False
        ) as limited:
            with pytest.raises(ForbiddenError):
                await limited.issuer(issuer.id).organization(acme._org_id).sso.add_domain({"domain": "x.com"})
