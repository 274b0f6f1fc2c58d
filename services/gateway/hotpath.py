"""The fast path: the usual requests of the busiest routes, answered before FastAPI, from FastAPI's own routes.

On the hot routes FastAPI's routing, dependencies and validation took much of the gateway's
CPU (docs/benchmarks.md). A route opts in by carrying `@fast(handler)` under its FastAPI decorator;
this layer matches a request against the same route objects (their compiled paths), in FastAPI's
order (those that can match its path's first two segments), and when the first that matches is
marked and the caller's session was confirmed in Redis within SESSION_REFRESH_S (or the route is
public, or needs no session and the caller sends no cookie), the handler answers. It validates the
body with the route's own model and calls the same function the route does; it returns None for
anything unusual (a body the model refuses, an odd query), and the request goes on, body and all,
to FastAPI, which answers it as if this layer were not there, every error in its own words. So a
route's checks are written once, and a new route is never mistaken for another. HOT_PATH=false
turns this layer off.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.convertors import Convertor, StringConvertor
from starlette.datastructures import State
from starlette.responses import Response
from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from services.gateway.bodies import bounded_body, declares_json, declares_merge_patch, header, replaying
from services.gateway.metrics import HttpMetrics, route_of
from services.gateway.observe import CLIENT_GONE, REQUEST_ID
from services.gateway.paths import without_slash
from services.gateway.responses import response_for
from services.gateway.sessions import COOKIE_NAME, SessionCookies, TwoSessions, has_two, sends_cookie
from shared.logs import current_request_id, request_id_from
from shared.settings import Settings


@dataclass(slots=True)
class Call:
    """One request as a fast handler sees it: the caller is a confirmed session."""

    scope: Scope
    caller: str  # "" on a public route, or a cookieless one for a caller without a cookie
    body: bytes
    params: dict[str, Any]
    state: State  # what the app's lifespan opened


FastHandler = Callable[[Call], Awaitable[Response | None]]
"""The answer, or None to leave the request to the FastAPI route."""

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
Model = TypeVar("Model", bound=BaseModel)


def fast(handler: FastHandler, *, public: bool = False, cookieless: bool = False) -> Callable[[Endpoint], Endpoint]:
    """Mark a FastAPI endpoint as answered by `handler` on the fast path (put it under the route decorator).

    `public`: a route that needs no session (a GET): the handler answers every caller, session or not.
    `cookieless`: a route that needs no session but refreshes one it is sent (a board's page): the
    handler answers a caller who sends no session cookie as it answers one with a confirmed session.
    """

    def mark(endpoint: Endpoint) -> Endpoint:
        endpoint.fast = handler  # type: ignore[attr-defined]
        endpoint.fast_public = public  # type: ignore[attr-defined]
        endpoint.fast_cookieless = cookieless  # type: ignore[attr-defined]
        return endpoint

    return mark


def parse_body(model: type[Model], call: Call, *, merge_patch: bool = False) -> Model | None:
    """The body as the route's model validates it; None (FastAPI then answers) if it is not that, or
    not declared as JSON (`merge_patch`: as application/merge-patch+json)."""
    if not (declares_merge_patch(call.scope) if merge_patch else declares_json(call.scope)):
        return None
    try:
        return model.model_validate(orjson.loads(call.body))
    except (orjson.JSONDecodeError, ValidationError):
        return None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A route as the fast path tries it: its path compiled by Starlette's public `compile_path`, as the
    route compiled it for itself.

    Route.matches() would build a child scope for every request; the compiled regex and convertors
    are what it matches with, so the answer is the same. A path with one parameter, a plain string,
    between two literals (`/api/playerstate/{document_id}`, `/api/leaderboard/{key}/me`) is matched
    without the regex: its `[^/]+` takes exactly a non-empty middle without a slash.
    """

    literal: str  # the path up to its first parameter: a cheap test before the regex
    route: APIRoute
    handler: FastHandler | None
    public: bool
    cookieless: bool
    param: str | None  # that one string parameter's name, if the path is `literal{param}suffix`
    suffix: str
    regex: re.Pattern[str]
    convertors: dict[str, Convertor[Any]]

    @classmethod
    def of(cls, route: APIRoute) -> Candidate:
        regex, path_format, convertors = compile_path(route.path)
        literal, _, rest = path_format.partition("{")
        name, _, suffix = rest.partition("}")
        plain = bool(rest) and "{" not in suffix and type(convertors.get(name)) is StringConvertor
        endpoint = route.endpoint
        handler = getattr(endpoint, "fast", None)
        public, cookieless = getattr(endpoint, "fast_public", False), getattr(endpoint, "fast_cookieless", False)
        return cls(literal, route, handler, public, cookieless, name if plain else None, suffix, regex, convertors)

    @property
    def whole_path(self) -> bool:
        """Whether the path has no parameter."""
        return not self.convertors

    def params(self, path: str) -> dict[str, Any] | None:
        """The path parameters if the route's path matches, else None."""
        if self.param is not None and path[-1:] != "\n":  # the regex's `$` also matches before a last newline
            if not path.endswith(self.suffix):
                return None
            middle = path[len(self.literal) : len(path) - len(self.suffix)]
            return {self.param: middle} if middle and "/" not in middle else None
        found = self.regex.match(path)
        if found is None:
            return None
        convertors = self.convertors
        return {name: convertors[name].convert(value) for name, value in found.groupdict().items()}


def candidates_by_method(routes: Sequence[BaseRoute]) -> dict[str, Sections]:
    """Per method, the routes FastAPI would try in order, up to the last one with a fast handler,
    filed by `section`."""
    api_routes = [route for route in routes if isinstance(route, APIRoute)]
    table: dict[str, Sections] = {}
    for method in sorted({method for route in api_routes for method in route.methods or ()}):
        found = [Candidate.of(route) for route in api_routes if method in (route.methods or ())]
        while found and found[-1].handler is None:
            found.pop()
        if found:
            table[method] = by_section(found)
    return table


Sections = tuple[dict[str, list[Candidate]], list[Candidate]]
"""The candidates that can match a path of each section, in order; those that can match any (a
parameter within a path's first two segments), for a section of none."""


def by_section(candidates: list[Candidate]) -> Sections:
    """So a request tries only the routes that can match it, in their order: a read tries two of
    thirteen GET routes."""
    filed = [(section_of(candidate), candidate) for candidate in candidates]
    names = {name for name, _ in filed if name is not None}
    sections = {name: [candidate for at, candidate in filed if at in (name, None)] for name in names}
    return sections, [candidate for at, candidate in filed if at is None]


def section_of(candidate: Candidate) -> str | None:
    """The section every path the candidate matches has; None if its paths differ in it."""
    literal = candidate.literal
    return section(literal) if candidate.whole_path or literal.count("/") > 2 else None


def section(path: str) -> str:
    """A path up to its third slash, its first two segments (`/api/playerstate` of `/api/playerstate/x`)."""
    first = path.find("/", 1)
    second = path.find("/", first + 1) if first > 0 else -1
    return path if second < 0 else path[:second]


class HotPath:
    """In front of everything (the path rewriting and Observe included, which it does itself for the
    requests it answers: a layer fewer, and no `send` wrapper, on the busiest requests); every other
    request goes to `fallback`, untouched."""

    def __init__(
        self,
        app: FastAPI,
        fallback: ASGIApp,
        routes: Sequence[BaseRoute],
        settings: Settings,
        metrics: HttpMetrics | None,
    ) -> None:
        """`routes`: every route of `app`, in the order FastAPI matches them; `fallback`: the app as
        served without the fast path."""
        self.app = app
        self.fallback = fallback
        self.settings = settings
        self.metrics = metrics
        self.cookies = SessionCookies(settings)
        self.cookie_name = COOKIE_NAME.encode()  # within `__Host-cq_session` too: either name twice
        self.table = candidates_by_method(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.find(scope) if scope["type"] == "http" else None
        if found is None:
            await self.fallback(scope, receive, send)
            return
        started = time.perf_counter()
        candidate, params = found
        if candidate.public:
            if has_two(scope["headers"], self.cookie_name):  # FastAPI's path refuses it, or not
                await self.fallback(scope, receive, send)
                return
            await self.answer(candidate, Call(scope, "", b"", params, self.app.state), receive, send, started)
            return
        now = int(time.time())
        try:
            claim = self.cookies.read(scope, now)
        except TwoSessions:
            claim = None  # FastAPI's path refuses it
        if claim is None and candidate.cookieless and not sends_cookie(scope["headers"], self.cookie_name):
            # As FastAPI's path answers it: no session to refresh, so no Set-Cookie.
            await self.answer(candidate, Call(scope, "", b"", params, self.app.state), receive, send, started)
            return
        if claim is None or not self.cookies.is_current(claim[1], now):
            await self.fallback(scope, receive, send)
            return
        session_id, _confirmed_at, token = claim
        body = b"" if scope["method"] == "GET" else await bounded_body(scope, receive, self.settings.max_body_bytes)
        if body is None:  # the client left
            if self.metrics is not None:
                self.metrics.record(route_of(scope), scope["method"], CLIENT_GONE, time.perf_counter() - started)
            return
        cookie = self.cookies.set_cookie(token)
        if isinstance(body, Response):  # the 413
            await self.deliver(body, scope, receive, send, new_request_id(scope), started, cookie)
            return
        call = Call(scope, session_id, body, params, self.app.state)
        await self.answer(candidate, call, receive, send, started, cookie)

    async def answer(
        self, candidate: Candidate, call: Call, receive: Receive, send: Send, started: float, cookie: str = ""
    ) -> None:
        """The fast handler's answer, or FastAPI's if it declines."""
        assert candidate.handler is not None
        scope = call.scope
        request_id = new_request_id(scope)
        try:
            response = await candidate.handler(call)
        except Exception as error:
            response = response_for(error)
        if response is None:
            scope[REQUEST_ID] = request_id
            await self.fallback(scope, replaying(call.body, receive), send)
            return
        await self.deliver(response, scope, receive, send, request_id, started, cookie)

    async def deliver(
        self,
        response: Response,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
        started: float,
        cookie: str,
    ) -> None:
        """As Observe would: the request id on the answer, and the request counted once it is sent."""
        headers = response.raw_headers
        if cookie:
            headers.append((b"set-cookie", cookie.encode("latin-1")))
        headers.append((b"x-request-id", request_id.encode()))
        try:
            await response(scope, receive, send)
        finally:
            if self.metrics is not None:
                elapsed = time.perf_counter() - started
                self.metrics.record(route_of(scope), scope["method"], response.status_code, elapsed)

    def find(self, scope: Scope) -> tuple[Candidate, dict[str, Any]] | None:
        """The route FastAPI would pick, if that route has a fast handler, and its path parameters.

        The path as ExpressPaths makes it: without a trailing slash (the seed's client saves to
        `/api/playerstate/`); HEAD, which it answers as GET, is never on the fast path.
        """
        routes = self.table.get(scope["method"])
        if routes is None:
            return None
        path = without_slash(scope["path"])  # the app is served at the root: no root_path to strip
        sections, anywhere = routes
        for candidate in sections.get(section(path), anywhere):
            if path.startswith(candidate.literal) and (params := candidate.params(path)) is not None:
                if candidate.handler is None:
                    return None
                scope["path"] = path
                scope["route"] = candidate.route  # as Starlette's router does: the metrics' label
                return candidate, params
        return None


def new_request_id(scope: Scope) -> str:
    """As Observe gives one: the caller's if sane, else a new one; set for the task's log lines."""
    request_id = request_id_from(header(scope, b"x-request-id"))
    current_request_id.set(request_id)
    return request_id
