"""IdP API routes under /{issuer_id} (decision 1), served by a plain Starlette application: the
protocol endpoints parse their own forms, so FastAPI's validation layer would only add cost."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Handler = Callable[[str, Request], Awaitable[Response]]


class Routes:
    """Collects ``(issuer_id, request)`` handlers as Starlette routes, decorator style."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def api_route(self, path: str, methods: list[str]) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                return await handler(request.path_params["issuer_id"], request)

            self.routes.append(Route(path, endpoint, methods=methods, name=handler.__name__))
            return handler

        return register

    def get(self, path: str) -> Callable[[Handler], Handler]:
        return self.api_route(path, ["GET"])

    def post(self, path: str) -> Callable[[Handler], Handler]:
        return self.api_route(path, ["POST"])
