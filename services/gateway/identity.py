"""Who the caller is: `GET /session` (the session layer has created the session by the time it runs),
and the recovery codes that carry that identity to another browser (recovery.py)."""

from __future__ import annotations

import time

from starlette.exceptions import HTTPException
from starlette.responses import Response

from services.gateway.layers import Call
from services.gateway.models import Session
from services.gateway.recovery import (
    NOT_A_CODE,
    TOO_MANY_ATTEMPTS,
    WRONG_CODE,
    RecoverBody,
    Recovery,
    RecoveryCode,
    canonical,
    grouped,
    new_code,
)
from services.gateway.responses import error_response, json_response
from services.gateway.routing import Route
from services.gateway.sessions import client_address, refuse_if_limited, write_session
from services.gateway.store import RateLimit, Store
from shared import keys

TAGS = ("session",)


async def session(call: Call) -> Response:
    """Your session id (created on first visit): it is your player id and your game id."""
    return json_response(200, {"id": call.session})


async def issue_recovery_code(call: Call) -> Response:
    """A new recovery code for your id, shown this once; the code issued before it stops working.

    Enter it in another browser (`POST /session/recover`) to play there as yourself, with your saves
    and board entries. It stays valid after use, until you ask for a new one or leave it unused for
    RECOVERY_TTL_DAYS (365). Redis keeps only its keyed hash. Needs a live session (401 otherwise);
    issuing counts against RATE_LIMIT_SESSION_WRITES, in a count of its own.
    """
    caller, store, made = call.session, call.state.store, call.state.recovery
    if not await store.exists(keys.session(caller)):
        raise HTTPException(401, "Your session has expired: call GET /session first")
    issues = RateLimit.on(made.issues, keys.rate_limit("session-recovery-codes", caller))
    await refuse_if_limited(store, issues, "Too many recovery codes; slow down")
    code = new_code()
    code_hash = made.hasher.hash(code)
    await store.issue_recovery(caller, code_hash, made.ttl_s)
    # An account erased while the code was being issued (DELETE /api/account) takes the code with it.
    if not await store.exists(keys.session(caller)):
        await store.revoke_recovery(caller, code_hash)
        raise HTTPException(401, "Your session has expired: call GET /session first")
    return json_response(200, {"code": grouped(code)})


async def recover(call: Call) -> Response:
    """Continue as the player a recovery code belongs to: this browser gets a session for their id
    (and so their saves and board entries), whatever session it had, also after theirs expired.

    Something that is not a code at all is 400; a wrong code 403. Attempts count per client address
    (RATE_LIMIT_ADDRESS_RECOVERIES, 20/hour) and per first group of the code, whoever sends it
    (RATE_LIMIT_PREFIX_RECOVERIES, 20/day): past either, 429 with Retry-After, for the right code too,
    since a limit that let it through would let every guess through to be checked.
    """
    store: Store = call.state.store
    made: Recovery = call.state.recovery
    code = canonical(call.body.code)
    if code is None:
        raise HTTPException(400, NOT_A_CODE)
    by_address = RateLimit.on(made.per_address, keys.rate_limit("address-recoveries", client_address(call.scope)))
    await refuse_if_limited(store, by_address, TOO_MANY_ATTEMPTS)
    by_prefix = RateLimit.on(made.per_prefix, keys.rate_limit("prefix-recoveries", made.hasher.prefix(code)))
    await refuse_if_limited(store, by_prefix, TOO_MANY_ATTEMPTS)
    player_id = await store.recovered_player(made.hasher.hash(code), made.ttl_s)
    if player_id is None:
        return error_response(403, WRONG_CODE)
    # Refresh the session another browser may hold, or start it anew: either way they share it.
    if not await write_session(store, made.settings, player_id, create=False):
        await write_session(store, made.settings, player_id, create=True)
    call.cookie = made.cookies.set_cookie(made.cookies.signer.sign(player_id, int(time.time())))  # sent as the session
    return json_response(200, {"id": player_id})


ROUTES = [
    Route("GET", "/session", session, "session", session=True, tags=TAGS, response_model=Session, responses={}),
    Route("POST", "/session/recovery", issue_recovery_code, "issue_recovery_code", session=True, tags=TAGS,
          response_model=RecoveryCode),
    Route("POST", "/session/recover", recover, "recover", body=RecoverBody, tags=TAGS, response_model=Session),
]  # fmt: skip
