"""Versions of a save as HTTP sees them: ETags out, If-Match and If-None-Match in (RFC 9110 13.1).

A save's version is the stream entry id of the command that last wrote it (shared/keys.py
version()); the ETag is that id in quotes, opaque to clients. A save written before versions has
none and answers as "0-0" until its next write. A write's precondition goes to the worker as the
command's `expect` (shared/protocol.py), which shared/apply_commands.lua checks in the write's own
atomic step; what cannot match any version is answered 412 here, without a command.
"""

from __future__ import annotations

import re

from fastapi import HTTPException
from starlette.types import Scope

from shared.protocol import ANY_VERSION, NO_DOCUMENT, VERSION_ID

UNVERSIONED = "0-0"
MAX_TAGS = 32
# One element of a list of entity-tags: [W/]"etagc*", optional whitespace around, then a comma or the end.
ELEMENT = re.compile(rb'[ \t]*(?:(W/)?"([\x21\x23-\x7e\x80-\xff]*)")?[ \t]*(?:,|\Z)')
VERSION = re.compile(VERSION_ID.encode())
CHANGED = "The save is not the version you named (If-Match / If-None-Match): read it again"

Tag = tuple[bool, bytes]  # weak, opaque
ANY: list[Tag] = []  # `*`: stands for every tag


def etag(version: str | None) -> str:
    return f'"{version or UNVERSIONED}"'


def header_values(scope: Scope, name: bytes) -> bytes | None:
    """Every line of a list header, joined as one list (RFC 9110 5.3); None when it is absent."""
    found = [value for key, value in scope["headers"] if key == name]
    return b", ".join(found) if found else None


def entity_tags(name: str, value: bytes) -> list[Tag]:
    """`*` (ANY) or the list's entity-tags; a 400 for anything else."""
    if value.strip(b" \t") == b"*":
        return ANY
    tags: list[Tag] = []
    at = 0
    while at < len(value):
        element = ELEMENT.match(value, at)
        if element is None or element.end() == at:
            break
        if element.group(2) is not None:
            tags.append((element.group(1) is not None, element.group(2)))
        at = element.end()
    if at < len(value) or not tags or len(tags) > MAX_TAGS:
        raise HTTPException(400, f'{name} must be * or up to {MAX_TAGS} entity-tags such as "1733140800000-0"')
    return tags


def write_precondition(scope: Scope) -> str:
    """A write's `expect` from If-Match / If-None-Match: "" when it has neither (last write wins).

    If-Match compares strongly: a weak tag never matches, so a list of nothing else is a 412 at once,
    as is one of tags that are no version of ours. If-None-Match on a write takes `*` only.
    """
    if_match, if_none_match = header_values(scope, b"if-match"), header_values(scope, b"if-none-match")
    if if_match is not None and if_none_match is not None:
        raise HTTPException(400, "Send If-Match or If-None-Match, not both")
    if if_none_match is not None:
        if entity_tags("If-None-Match", if_none_match) is not ANY:
            raise HTTPException(400, "On a write, If-None-Match takes * only: create if there is no save yet")
        return NO_DOCUMENT
    if if_match is None:
        return ""
    tags = entity_tags("If-Match", if_match)
    if tags is ANY:
        return ANY_VERSION
    versions = [opaque.decode() for weak, opaque in tags if not weak and VERSION.fullmatch(opaque)]
    if not versions:
        raise HTTPException(412, CHANGED)
    return " ".join(dict.fromkeys(versions))


def read_precondition(scope: Scope) -> list[Tag] | None:
    """A GET's If-None-Match, checked before anything is read; None when it has none."""
    value = header_values(scope, b"if-none-match")
    return None if value is None else entity_tags("If-None-Match", value)


def not_modified(tags: list[Tag] | None, version: str | None) -> bool:
    """Whether a GET's If-None-Match names the stored version (weak comparison: W/ is ignored)."""
    if tags is None:
        return False
    current = (version or UNVERSIONED).encode()
    return tags is ANY or any(opaque == current for _, opaque in tags)
