"""Cross-origin access for browser clients (decisions 28 and 34).

Discovery and JWKS are public documents: any origin may read them (``*``). The token, userinfo,
revocation and introspection endpoints answer only the issuer's browser origins: those of its
``spa`` and ``native`` clients' redirect URIs plus every client's ``allowed_origins``. That set is
cached per issuer like the issuer and client rows (``storage.row_cache``, evicted by Core API client
writes), so a cross-origin token request costs no extra query."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from authpi.oidc.context import runtime
from authpi.runtime import Runtime
from authpi.services import clients
from authpi.storage import row_cache

ALLOW_HEADERS = "Authorization, Content-Type"
# Browser code needs the challenge of a 401 and the wait of a 429 or 503.
EXPOSE_HEADERS = "WWW-Authenticate, Retry-After"
MAX_AGE = "600"


async def issuer_origins(rt: Runtime, issuer_id: str) -> frozenset[str]:
    """The issuer's browser origins (an unknown issuer simply has none)."""
    if not issuer_id.startswith("i_") or len(issuer_id) > 64:
        return frozenset()

    async def load() -> frozenset[str]:
        async with rt.sessions() as session:
            return await clients.issuer_browser_origins(session, issuer_id)

    origins: frozenset[str] | None = await row_cache.rows.get_or_load("origins", issuer_id, load)
    return origins or frozenset()


@dataclass(frozen=True)
class Cors:
    """How one endpoint answers browsers: ``public`` documents to anyone, the rest to the issuer's
    browser origins only (an unknown origin gets no CORS header at all, so the browser refuses)."""

    methods: tuple[str, ...]
    public: bool = False

    async def allowed_origin(self, request: Request, issuer_id: str) -> str | None:
        if self.public:
            return "*"
        origin = request.headers.get("origin")
        if not origin:
            return None
        return origin if origin in await issuer_origins(runtime(request), issuer_id) else None

    async def decorate(self, request: Request, issuer_id: str, response: Response) -> Response:
        """Add the CORS headers of an actual (non-preflight) response."""
        allowed = await self.allowed_origin(request, issuer_id)
        if not self.public:
            response.headers.add_vary_header("Origin")
        if allowed is not None:
            response.headers["Access-Control-Allow-Origin"] = allowed
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        return response

    async def preflight(self, request: Request, issuer_id: str) -> Response:
        """OPTIONS: 204 listing what a cross-origin request may use, for an allowed origin."""
        allow = ", ".join((*self.methods, "OPTIONS"))
        response = Response(status_code=204, headers={"Allow": allow})
        allowed = await self.allowed_origin(request, issuer_id)
        if not self.public:
            response.headers.add_vary_header("Origin")
        if allowed is not None:
            response.headers.update(
                {
                    "Access-Control-Allow-Origin": allowed,
                    "Access-Control-Allow-Methods": allow,
                    "Access-Control-Allow-Headers": ALLOW_HEADERS,
                    "Access-Control-Max-Age": MAX_AGE,
                }
            )
        return response
