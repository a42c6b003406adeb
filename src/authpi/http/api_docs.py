"""The interactive API reference at ``/docs``, served entirely by this server.

Swagger UI's files come from the ``swagger-ui-bundle`` package (mounted under ``/docs/assets``), so the
page works without internet access, and its Content-Security-Policy allows nothing but this origin:
scripts from ``/docs/assets`` plus the one inline start-up script, allowed by its hash.

The packaged Swagger UI (4.x) reads OpenAPI 3.0, not the 3.1 that FastAPI publishes at
``/openapi.json``: the page loads ``/docs/openapi.json``, the same document with the two 3.1 forms it
uses rewritten the 3.0 way (``anyOf`` with ``{"type": "null"}`` → ``nullable``, ``const`` → ``enum``).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope
from swagger_ui_bundle import swagger_ui_path

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
DOCUMENT_URL = "/docs/openapi.json"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
# What the page loads (and the source maps a browser's developer tools ask for). The package also
# ships a demo page that loads a document from the internet: it is not served.
ASSETS = frozenset(
    {
        "swagger-ui-bundle.js",
        "swagger-ui-bundle.js.map",
        "swagger-ui.css",
        "swagger-ui.css.map",
        "favicon-32x32.png",
    }
)


class _Assets(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        if path not in ASSETS:
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)


def _page(app: FastAPI) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=DOCUMENT_URL,
        title=f"{app.title} — reference",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
        oauth2_redirect_url=None,
        # The Authorize dialog keeps the API key across reloads of the page.
        swagger_ui_parameters={"persistAuthorization": True},
    )


def as_openapi_30(document: dict[str, Any]) -> dict[str, Any]:
    """The document in the OpenAPI 3.0 dialect Swagger UI 4 renders."""
    converted: dict[str, Any] = _to_30(copy.deepcopy(document))
    converted["openapi"] = "3.0.3"
    return converted


def _to_30(node: Any) -> Any:
    if isinstance(node, list):
        return [_to_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _to_30(value) for key, value in node.items()}
    variants = node.get("anyOf")
    if isinstance(variants, list) and {"type": "null"} in variants:
        rest = [variant for variant in variants if variant != {"type": "null"}]
        del node["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            node = {**rest[0], **node}
        elif len(rest) == 1:
            node["allOf"] = rest  # 3.0 ignores siblings of a $ref
        else:
            node["anyOf"] = rest
        node["nullable"] = True
    if "const" in node and not isinstance(node["const"], dict | list):
        node["enum"] = [node.pop("const")]
    return node


def content_security_policy(html: bytes) -> str:
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html.decode())
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def install(app: FastAPI) -> None:
    """Mount the assets and the page; the FastAPI app is created with ``docs_url=None``."""
    app.mount(ASSETS_URL, _Assets(directory=str(swagger_ui_path)), name="docs-assets")
    rendered: dict[str, tuple[bytes, str]] = {}
    converted: dict[str, dict[str, Any]] = {}

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs() -> HTMLResponse:
        if "page" not in rendered:  # the same for every request: render it once
            body = bytes(_page(app).body)
            rendered["page"] = (body, content_security_policy(body))
        body, policy = rendered["page"]
        return HTMLResponse(body, headers={"Content-Security-Policy": policy})

    @app.get(DOCUMENT_URL, include_in_schema=False)
    async def document() -> JSONResponse:
        if "document" not in converted:
            converted["document"] = as_openapi_30(app.openapi())
        return JSONResponse(converted["document"])
