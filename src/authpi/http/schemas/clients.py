from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from authpi.http.schemas.common import Metadata, StrictInput
from authpi.services import clients
from authpi.storage.tables.clients import Client

ClientType = Literal["web", "spa", "native", "m2m"]
ClientStatus = Literal["active", "disabled", "deleted"]


class ClientCreate(StrictInput):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    logo_url: str | None = Field(default=None, max_length=2000)
    type: ClientType | None = None
    confidential: bool | None = None
    protocol: Literal["openid"] | None = None
    scopes: list[str] | None = Field(default=None, max_length=500)
    settings: dict[str, Any] | None = None
    status: Literal["active", "disabled"] | None = None
    metadata: Metadata | None = None


class ClientUpdate(StrictInput):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    logo_url: str | None = Field(default=None, max_length=2000)
    scopes: list[str] | None = Field(default=None, max_length=500)
    settings: dict[str, Any] | None = None
    status: Literal["active", "disabled"] | None = None
    metadata: Metadata | None = None
    # Accepted only to explain, field by field, that they cannot change.
    type: str | None = None
    confidential: bool | None = None
    protocol: Literal["openid"] | None = None


class ClientOut(BaseModel):
    id: str
    issuer_id: str
    status: str
    type: str
    confidential: bool
    secret_rotated_at: int | None
    name: str
    description: str | None
    logo_url: str | None
    # Not in the SDK's Client model (which ignores unknown keys) but part of the resource.
    protocol: str
    application_type: str
    scopes: list[str]
    settings: dict[str, Any]
    status_at: int | None
    metadata: Metadata | None
    created_at: int
    updated_at: int | None

    @classmethod
    def fields_of(cls, client: Client) -> dict[str, Any]:
        return {
            "id": client.id,
            "issuer_id": client.issuer_id,
            "status": client.status,
            "type": client.type,
            "confidential": client.confidential,
            "secret_rotated_at": client.secret_rotated_at,
            "name": client.name,
            "description": client.description,
            "logo_url": client.logo_url,
            "protocol": clients.PROTOCOL,
            "application_type": client.application_type,
            "scopes": list(client.scopes),
            "settings": client.settings,
            "status_at": client.status_at,
            "metadata": client.metadata_,
            "created_at": client.created_at,
            "updated_at": client.updated_at,
        }

    @classmethod
    def of(cls, client: Client) -> ClientOut:
        return cls(**cls.fields_of(client))


class CreatedClientOut(ClientOut):
    """The new client with its secret: shown this once, null for a public client."""

    secret: str | None

    @classmethod
    def created(cls, new: clients.NewClient) -> CreatedClientOut:
        return cls(**cls.fields_of(new.client), secret=new.secret)


class ClientListItemOut(BaseModel):
    id: str
    issuer_id: str
    status: str
    type: str
    confidential: bool
    name: str
    description: str | None
    logo_url: str | None
    scopes: list[str]
    protocol: str
    application_type: str | None
    grant_types: list[str] | None
    redirect_uri_count: int | None
    configuration_indexed: bool | None
    secret_rotated_at: int | None
    status_at: int | None
    created_at: int
    updated_at: int | None

    @classmethod
    def of(cls, client: Client) -> ClientListItemOut:
        openid = clients.openid(client)
        return cls(
            id=client.id,
            issuer_id=client.issuer_id,
            status=client.status,
            type=client.type,
            confidential=client.confidential,
            name=client.name,
            description=client.description,
            logo_url=client.logo_url,
            scopes=list(client.scopes),
            protocol=clients.PROTOCOL,
            application_type=client.application_type,
            grant_types=list(openid.get("grant_types") or []),
            redirect_uri_count=len(openid.get("redirect_uris") or []),
            configuration_indexed=False,
            secret_rotated_at=client.secret_rotated_at,
            status_at=client.status_at,
            created_at=client.created_at,
            updated_at=client.updated_at,
        )


class SecretOut(BaseModel):
    secret: str
