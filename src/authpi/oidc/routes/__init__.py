"""IdP API routes under /{issuer_id} (decision 1), served by a plain Starlette application: the
protocol endpoints parse their own forms, so FastAPI's validation layer would only add cost."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from authpi.availability import transient_failure
from authpi.oidc.context import runtime
from authpi.oidc.cors import Cors
from authpi.oidc.errors import OAuthError, oauth_error_response
from authpi.storage.errors import is_transient

Handler = Callable[[str, Request], Awaitable[Response]]


class Routes:
    """Collects ``(issuer_id, request)`` handlers as Starlette routes, decorator style."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def api_route(
        self, path: str, methods: list[str], cors: Cors | None = None
    ) -> Callable[[Handler], Handler]:
        """Register ``handler``; with ``cors``, also its OPTIONS preflight, and every answer,
        errors included, carries the CORS headers (a browser cannot read an error without them)."""

        def register(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                return await handler(request.path_params["issuer_id"], request)

            async def cross_origin(request: Request) -> Response:
                assert cors is not None
                issuer_id = request.path_params["issuer_id"]
                try:
                    response = await handler(issuer_id, request)
                except OAuthError as exc:
                    response = oauth_error_response(exc)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    # The 503 carries the CORS headers too, so browser code can read Retry-After.
                    response = transient_failure(request.scope, exc, runtime(request).health)
                return await cors.decorate(request, issuer_id, response)

            async def preflight(request: Request) -> Response:
                assert cors is not None
                return await cors.preflight(request, request.path_params["issuer_id"])

            name = handler.__name__
            self.routes.append(Route(path, cross_origin if cors else endpoint, methods=methods, name=name))
            if cors is not None:
                self.routes.append(Route(path, preflight, methods=["OPTIONS"], name=f"{name}_preflight"))
            return handler

        return register

    def get(self, path: str, cors: Cors | None = None) -> Callable[[Handler], Handler]:
        return self.api_route(path, ["GET"], cors)

    def post(self, path: str, cors: Cors | None = None) -> Callable[[Handler], Handler]:
        return self.api_route(path, ["POST"], cors)
