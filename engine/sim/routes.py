"""Routes declared on the handlers they lead to, for the REST and the admin API alike.

A route table kept apart from its handlers drifts from them; `@route` puts each path next to its code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
F = TypeVar("F", bound=Callable[..., Any])
_ROUTE = "_sim_route"


def route(method: str, path: str) -> Callable[[F], F]:
    def mark(handler: F) -> F:
        setattr(handler, _ROUTE, (method, path))
        return handler

    return mark


def install_routes(app: web.Application, api: object) -> None:
    """Register the handlers marked in `api`'s own class body, in the order it defines them, which is
    the order aiohttp tries them in."""
    for name, member in vars(type(api)).items():
        marked: tuple[str, str] | None = getattr(member, _ROUTE, None)
        if marked is not None:
            method, path = marked
            # web.route("GET", ...) registers through add_get, which answers HEAD too.
            app.router.add_routes([web.route(method, path, getattr(api, name))])
