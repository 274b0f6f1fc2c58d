"""`GET /session`: who the caller is. SessionMiddleware has created the session by the time this runs."""

from __future__ import annotations

from fastapi import APIRouter

from services.gateway.dependencies import SessionId
from services.gateway.models import Session

router = APIRouter(tags=["session"])


@router.get("/session", response_model=Session)
async def session(caller: SessionId) -> Session:
    """Your session id (created on first visit): it is your player id and your game id."""
    return Session(id=caller)
