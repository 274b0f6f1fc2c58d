"""What the routes ask FastAPI for: the caller, their address, the app's Redis store and command bus."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from services.gateway.commands import CommandBus
from services.gateway.models import Message
from services.gateway.sessions import client_address
from services.gateway.store import Store

# The error answers every API route may give, for the OpenAPI schema.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Message} for code in (400, 401, 403, 404, 413, 415, 429, 503, 504)
}

# Dependencies are `async` so FastAPI runs them inline rather than handing them to its thread pool.


async def session_id(request: Request) -> str:
    """The caller's session id, which SessionMiddleware found; every save and score route needs one."""
    found: str | None = request.state.session_id
    if found is None:
        raise HTTPException(401, "No session: call GET /session first, and send its cookie back")
    return found


async def address(request: Request) -> str:
    """The caller's address, which the write limits count by."""
    return client_address(request.scope)


async def bus(request: Request) -> CommandBus:
    commands: CommandBus = request.app.state.bus
    return commands


async def store(request: Request) -> Store:
    redis: Store = request.app.state.store
    return redis


SessionId = Annotated[str, Depends(session_id)]
Address = Annotated[str, Depends(address)]
Bus = Annotated[CommandBus, Depends(bus)]
AppStore = Annotated[Store, Depends(store)]
