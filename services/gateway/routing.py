"""Every API route as one record, and the router that serves them.

A route is declared once: its method and path, its body and query models, whether it needs a
session, its handler and its OpenAPI entry. The router matches a request against the records in
their order, validates what the route declares and calls its handler; the OpenAPI document is
generated from the same records (`openapi_routes`), so what is served and what is documented cannot
drift apart. What no record matches goes on to FastAPI, which serves the docs and the game's files.

Validation answers as the FastAPI routes before it did, in the same words, so a client written
against them sees no change: a body that is not declared JSON is a 415, a missing session a 401,
then the first problem of the query, then of the body, each a 400 phrased by `describe`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import Path, Query
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from starlette.convertors import Convertor, StringConvertor
from starlette.responses import JSONResponse, Response
from starlette.routing import compile_path

from services.gateway.layers import JSON, Call, media_type
from services.gateway.models import Message
from services.gateway.responses import error_response

NO_SESSION = "No session: call GET /session first, and send its cookie back"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# The error answers every API route may give, for the OpenAPI document.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Message} for code in (400, 401, 403, 404, 413, 415, 429, 503, 504)
}


Handler = Callable[[Call], Awaitable[Response]]
Guard = Callable[[Call], Awaitable[None]]
"""Who else may call a route (an operator's token): raises the refusal (a 401) or lets the call on."""


@dataclass(frozen=True)
class Route:
    """An API route: what it takes, who may call it, what answers it, and how the docs show it.

    `handler`'s docstring is the route's description in the OpenAPI document unless `description`
    says otherwise; `name` is its operation id's stem, as FastAPI makes one.
    """

    method: str
    path: str
    handler: Handler
    name: str
    body: type[BaseModel] | None = None
    media_types: tuple[bytes, ...] = (JSON,)  # what a body may be declared as
    query: type[BaseModel] | None = None  # frozen: a validated query is shared between requests
    session: bool = False  # 401 without one
    guard: Guard | None = None
    patterns: dict[str, str] = field(default_factory=dict)  # what a path parameter must match (else 400)
    tags: tuple[str, ...] = ()
    description: str | None = None
    response_model: Any = None
    responses: dict[int | str, dict[str, Any]] = field(default_factory=lambda: dict(ERRORS))
    response_class: type[Response] = JSONResponse
    in_schema: bool = True
    # The path compiled by Starlette's public compile_path, and split for the cheap test of `match`.
    regex: Any = field(init=False, repr=False)
    convertors: dict[str, Convertor[Any]] = field(init=False, repr=False)
    literal: str = field(init=False, repr=False)  # the path up to its first parameter
    param: str | None = field(init=False, repr=False)  # the one plain parameter of `literal{param}suffix`
    suffix: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.query is not None and not self.query.model_config.get("frozen"):
            raise TypeError(f"{self.name}: a query model is shared between requests, so it must be frozen")
        regex, path_format, convertors = compile_path(self.path)
        literal, _, rest = path_format.partition("{")
        name, _, suffix = rest.partition("}")
        plain = bool(rest) and "{" not in suffix and type(convertors.get(name)) is StringConvertor
        for attribute, value in [
            ("regex", regex), ("convertors", convertors), ("literal", literal),
            ("param", name if plain else None), ("suffix", suffix),
        ]:  # fmt: skip
            object.__setattr__(self, attribute, value)

    @property
    def path_format(self) -> str:
        """The template the metrics count a request under (`route_of`)."""
        return self.path

    def match(self, path: str) -> dict[str, Any] | None:
        """The path's parameters if it is this route's, else None.

        A path `literal{param}suffix` with one plain string parameter is matched without the regex:
        Starlette's `[^/]+` takes exactly a non-empty middle without a slash.
        """
        if not path.startswith(self.literal):
            return None
        if self.param is not None and path[-1:] != "\n":  # the regex's `$` also matches before a last newline
            if not path.endswith(self.suffix):
                return None
            middle = path[len(self.literal) : len(path) - len(self.suffix)]
            return {self.param: middle} if middle and "/" not in middle else None
        found = self.regex.match(path)
        if found is None:
            return None
        return {name: self.convertors[name].convert(value) for name, value in found.groupdict().items()}

    async def serve(self, call: Call) -> Response:
        """Check what the route declares, in the order FastAPI did, then answer."""
        scope = call.scope
        if self.body is not None and media_type(scope) not in self.media_types:
            wanted = " or ".join(media.decode() for media in self.media_types)
            return error_response(415, f"Send the body as JSON, with Content-Type: {wanted}")
        if self.session and call.caller is None:
            return error_response(401, NO_SESSION)
        if self.guard is not None:
            await self.guard(call)
        for name, pattern in self.patterns.items():
            if re.fullmatch(pattern, call.params[name]) is None:  # as pydantic words it
                return error_response(400, f"path.{name}: String should match pattern '{pattern}'")
        if self.query is not None:
            query = parsed_query(self.query, scope["query_string"])
            if isinstance(query, str):
                return error_response(400, query)
            call.query = query
        if self.body is not None:
            refusal = self.validate_body(call)
            if refusal is not None:
                return refusal
        return await self.handler(call)

    def validate_body(self, call: Call) -> Response | None:
        assert self.body is not None
        if not call.raw:
            return error_response(400, "Field required")
        try:
            data = orjson.loads(call.raw)  # strict JSON: no NaN or Infinity to be stored as null
        except orjson.JSONDecodeError:
            return error_response(400, "Malformed JSON body")
        try:
            # from_attributes: as FastAPI validated a body, so an array is refused in its words.
            call.body = self.body.model_validate(data, from_attributes=True)
        except ValidationError as error:
            return error_response(400, describe(error.errors(), None))
        return None


@lru_cache(maxsize=1024)
def parsed_query(model: type[BaseModel], query_string: bytes) -> BaseModel | str:
    """The query as `model` (frozen) validates it, or its first problem. Cached: a board's readers
    send the same few queries, and validating one costs a top-10 read more than its Redis call."""
    try:
        return model.model_validate(dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)))
    except ValidationError as error:
        return describe(error.errors(), "query")


def describe(errors: list[ErrorDetails], source: str | None) -> str:
    """The first problem, phrased for a client developer: where it is (`query.count`, `playerData.id`)
    and what is wrong; a body's problems are named without a prefix."""
    first = errors[0]
    where = ".".join(str(part) for part in ((source,) if source else ()) + tuple(first["loc"]))
    return f"{where}: {first['msg']}" if where else str(first["msg"])


class Router:
    """The records of each method in their declared order; the first whose path matches answers.

    Each method's records are filed by the first two segments their paths have in common
    (`/api/playerstate`), so a request tries only those that can match it: a read tries two of the
    GET routes, not every one before it.
    """

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)
        self.by_method: dict[str, tuple[dict[str, list[Route]], list[Route]]] = {}
        for method in {route.method for route in self.routes}:
            filed = [(route_section(route), route) for route in self.routes if route.method == method]
            anywhere = [route for at, route in filed if at is None]
            sections = {at: [route for where, route in filed if where in (at, None)] for at, _ in filed if at}
            self.by_method[method] = sections, anywhere

    def find(self, method: str, path: str) -> tuple[Route, dict[str, Any]] | None:
        filed = self.by_method.get(method)
        if filed is None:
            return None
        sections, anywhere = filed
        for route in sections.get(section(path), anywhere):
            params = route.match(path)
            if params is not None:
                return route, params
        return None

    def allowed(self, path: str) -> list[str]:
        """The methods some route answers on `path` (HEAD wherever GET is): a 405's `Allow`."""
        methods = {route.method for route in self.routes if route.match(path) is not None}
        return sorted({*methods, "HEAD"} if "GET" in methods else methods)


def section(path: str) -> str:
    """A path up to its third slash: its first two segments (`/api/playerstate` of `/api/playerstate/x`)."""
    first = path.find("/", 1)
    second = path.find("/", first + 1) if first > 0 else -1
    return path if second < 0 else path[:second]


def route_section(route: Route) -> str | None:
    """The section of every path the route matches; None if a parameter lies within the first two segments."""
    if not route.convertors:
        return section(route.path)
    return section(route.literal) if route.literal.count("/") > 2 else None


def openapi_routes(routes: Sequence[Route]) -> list[APIRoute]:
    """The records as FastAPI routes, for FastAPI's OpenAPI generator only: each gets an endpoint
    whose signature declares the route's path parameters, query model and body model (and is never
    called; the router serves the route)."""
    return [openapi_route(route) for route in routes if route.in_schema]


def openapi_route(route: Route) -> APIRoute:
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter(name, keyword, annotation=Annotated[str, Path(pattern=route.patterns.get(name))])
        for name in route.convertors
    ]
    if route.query is not None:
        parameters.append(inspect.Parameter("query", keyword, annotation=Annotated[route.query, Query()]))
    if route.body is not None:
        parameters.append(inspect.Parameter("body", keyword, annotation=route.body))

    async def endpoint(**_: Any) -> None:
        raise NotImplementedError  # documentation only

    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return APIRoute(
        route.path,
        endpoint,
        methods=[route.method],
        name=route.name,
        tags=list(route.tags),
        description=route.description or inspect.cleandoc(route.handler.__doc__ or ""),
        response_model=route.response_model,
        responses=route.responses,
        response_class=route.response_class,
    )
