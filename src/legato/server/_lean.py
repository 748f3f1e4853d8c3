"""The endpoints every transaction comes through, served by a plain Starlette route
placed in front of FastAPI's.

A saga comes in through ``POST /v1/sagas`` or DTM's ``submit``; TCC, XA and msg
through DTM's ``prepare``, ``registerBranch``, ``submit`` and ``abort``. FastAPI's
general path per request (resolving the dependencies, reading and validating the
body, encoding the answer) cost about a third of what such a request costs the
service in CPU, before the log and the participants. ``lean_route`` builds, from an
endpoint's FastAPI route, a plain route that does the same directly:

- the route's dependencies, each of which takes the request alone (the token check,
  the coordinator), called in order, their values passed by name;
- its body (at most one model), as the edge parsed it (``legato._edge.PARSED``),
  validated against the same model and refused with the same 422: FastAPI's
  ``RequestValidationError``, each error's ``loc`` starting with ``body``, an empty
  body ``missing``;
- the endpoint function itself, its answer returned as it is when it is a response,
  else encoded as JSON with the route's status code.

An endpoint taking anything else (a path or query parameter, a dependency of its
own dependencies) is refused when the route is built, not served differently.
FastAPI's route stays registered behind the plain one: the OpenAPI document is its.
"""

from __future__ import annotations

import json
from asyncio import iscoroutinefunction
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, APIRouter
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._edge import PARSED

_EMPTY = object()


Call = Callable[..., Awaitable[Any]]


def _async(call: Callable[..., Any] | None, where: str) -> Call:
    if call is None or not iscoroutinefunction(call):
        raise TypeError(f"{where}: a plain route awaits async functions only")
    return call


def _takes_request_only(d: Dependant) -> bool:
    return bool(d.request_param_name) and not (
        d.path_params
        or d.query_params
        or d.header_params
        or d.cookie_params
        or d.body_params
        or d.dependencies
        or d.response_param_name
        or d.background_tasks_param_name
        or d.security_scopes_param_name
        or d.websocket_param_name
        or d.http_connection_param_name
    )


def lean_route(route: APIRoute) -> Route:
    """A plain route serving ``route``'s endpoint as FastAPI would (see the module)."""
    d = route.dependant
    if (
        d.path_params
        or d.query_params
        or d.header_params
        or d.cookie_params
        or len(d.body_params) > 1
        or d.response_param_name
        or d.background_tasks_param_name
        or d.security_scopes_param_name
        or not all(_takes_request_only(sub) for sub in d.dependencies)
    ):
        raise TypeError(f"{route.path}: its parameters need FastAPI's own route")
    call = _async(d.call, route.path)
    depends = [
        (sub.name, _async(sub.call, route.path), str(sub.request_param_name))
        for sub in d.dependencies
    ]
    read_body: Callable[[Request], Awaitable[Any]] | None = None
    body_name = ""
    if d.body_params:
        body_name, info = d.body_params[0].name, d.body_params[0].field_info
        if info.metadata or info.annotation is None:
            raise TypeError(f"{route.path}: a constrained body needs FastAPI's own route")
        read_body = _body_reader(TypeAdapter(info.annotation), info.is_required(), info.default)
    status = route.status_code or 200

    async def endpoint(request: Request) -> Response:
        kwargs: dict[str, Any] = {}
        for name, dependency, param in depends:
            value = await dependency(**{param: request})
            if name:
                kwargs[name] = value
        if d.request_param_name:
            kwargs[d.request_param_name] = request
        if read_body is not None:
            kwargs[body_name] = await read_body(request)
        answer = await call(**kwargs)
        if isinstance(answer, Response):
            return answer
        return JSONResponse(answer, status_code=status)

    return Route(
        route.path,
        endpoint,
        methods=sorted(route.methods or ()),
        name=route.name,
        include_in_schema=False,
    )


def _body_reader(
    adapter: TypeAdapter[Any], required: bool, default: Any
) -> Callable[[Request], Awaitable[Any]]:
    async def read(request: Request) -> Any:
        value = request.scope.get(PARSED, _EMPTY)
        if value is _EMPTY:  # the edge parses every JSON body; an empty one stays empty
            raw = await request.body()
            value = json.loads(raw) if raw else _EMPTY
        if value is _EMPTY:
            if required:
                raise RequestValidationError(
                    [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
                )
            return default
        try:
            return adapter.validate_python(value, from_attributes=True)  # as FastAPI does
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in errors], body=value
            ) from None

    return read


def lean_routes(router: APIRouter, *endpoints: Callable[..., Any]) -> list[Route]:
    """Plain routes for every route of ``router`` whose endpoint is one of ``endpoints``."""
    found = [r for r in router.routes if isinstance(r, APIRoute) and r.endpoint in endpoints]
    if {r.endpoint for r in found} != set(endpoints):
        raise ValueError("an endpoint given has no route on this router")
    return [lean_route(r) for r in found]
