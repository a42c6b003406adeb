"""The API reference at /docs works offline, and the OpenAPI document declares the API key scheme.

* The page references only this server's own files (Swagger UI ships in the package), under a
  Content-Security-Policy that allows nothing but this origin; every asset it names is served.
* In Chromium, with every host but the server unresolvable, the page renders the operations and an
  Authorize button.
* ``/openapi.json`` declares HTTP Basic in ``components.securitySchemes`` and every Core operation
  requires it, as the server does (a request without credentials is 401 with a Basic challenge).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import RunningServer

CHROMIUM = Path("/usr/bin/chromium")
ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def _docs(server: RunningServer) -> httpx.Response:
    page = httpx.get(f"{server.url}/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    return page


def _referenced_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)


def test_docs_page_references_only_local_assets_under_a_self_only_policy(server: RunningServer) -> None:
    page = _docs(server)
    urls = _referenced_urls(page.text)
    assert len(urls) >= 4, urls  # stylesheet, icon, script, document
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert "http://" not in page.text and "https://" not in page.text

    policy = page.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert "unsafe-inline" not in policy and "http" not in policy and "*" not in policy
    assert re.fullmatch(r"'self'( 'sha256-[A-Za-z0-9+/=]+')+", directives["script-src"]), policy

    for url in urls:
        asset = httpx.get(f"{server.url}{url}")
        assert asset.status_code == 200, url
        expected = ASSET_TYPES.get(Path(url).suffix, "application/json")
        assert expected in asset.headers["content-type"], (url, asset.headers["content-type"])
    # Only those: not the package's demo page, which loads a document from the internet.
    for name in ("index.html", "swagger-initializer.js", "../../../../etc/passwd"):
        assert httpx.get(f"{server.url}/docs/assets/{name}").status_code == 404, name


def test_docs_document_is_the_published_one_in_the_dialect_swagger_ui_reads(server: RunningServer) -> None:
    published = httpx.get(f"{server.url}/openapi.json").json()
    url = next(u for u in _referenced_urls(_docs(server).text) if u.endswith(".json"))
    rendered = httpx.get(f"{server.url}{url}").json()
    assert rendered["openapi"].startswith("3.0.")
    assert rendered["paths"].keys() == published["paths"].keys()
    assert rendered["components"]["securitySchemes"] == published["components"]["securitySchemes"]
    assert '{"type": "null"}' not in str(rendered).replace("'", '"')


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()]


def test_openapi_declares_http_basic_for_every_core_operation(server: RunningServer) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert len(schemes) == 1
    name, scheme = next(iter(schemes.items()))
    assert scheme["type"] == "http" and scheme["scheme"] == "basic"
    operations = _operations(document)
    assert len(operations) >= 20
    for path, method, operation in operations:
        assert operation.get("security") == [{name: []}], (method, path)
    # The declaration is what the server does: no credentials, a 401 with a Basic challenge.
    response = httpx.get(f"{server.url}/v1/accounts/{server.account_id}/issuers")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")


@pytest.mark.browser
def test_docs_render_in_a_browser_without_internet(server: RunningServer) -> None:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={profile}",
                # Every other host is unresolvable: a CDN reference would leave the page blank.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--virtual-time-budget=15000",
                "--dump-dom",
                f"{server.url}/docs",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    dom = done.stdout
    assert "Unable to render" not in dom
    assert "btn authorize" in dom, dom[-2000:]
    assert dom.count('class="opblock-tag') >= 5, dom[-2000:]
