"""Recovery codes: a player carries their id (and so their saves and board entries) to another browser.

A code is 100 random bits in Crockford's base32 (no I, L, O or U, so nothing reads as something
else), five groups of four: `7K3M-QX2P-A9TB-R4WD-HE6C`. It is read back case-insensitively, with or
without dashes and spaces, and I, L and O are taken as the 1 and 0 they look like.

Redis keeps only its HMAC-SHA256 under a key derived from the session secret. A slow KDF (bcrypt,
scrypt, argon2) exists to make guessing a leaked hash of a low-entropy password costly; 100 random
bits are out of reach of any guessing, fast hash or not (2^100 tries), and a slow KDF would hand every
caller of POST /session/recover a lever on the gateway's CPU. The key adds that a copy of Redis alone
cannot even test a guess.

A code stays valid after use, until the player issues a new one (which revokes it) or it goes unused
for RECOVERY_TTL_DAYS: a player may move between several devices with the one code they wrote down.
The routes are in identity.py; the keys' life in services/gateway/store.py.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from pydantic import BaseModel, Field

from services.gateway.sessions import SessionCookies, stored_secret
from shared.settings import Settings, parse_rate

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32: 5 bits a character
GROUPS, GROUP_LENGTH = 5, 4  # 20 characters, 100 bits
CODE_LENGTH = GROUPS * GROUP_LENGTH
# Room for the code with any spacing a person might type, and no more.
MAX_CODE_INPUT = 64
SEPARATORS = re.compile(r"[\s-]+")
LOOKALIKES = str.maketrans("OIL", "011")
CANONICAL = re.compile(f"[{ALPHABET}]{{{CODE_LENGTH}}}")
NOT_A_CODE = f"code: not a recovery code ({GROUPS} groups of {GROUP_LENGTH} letters and digits)"
WRONG_CODE = "Unknown, expired or replaced recovery code"
TOO_MANY_ATTEMPTS = "Too many recovery attempts; try again later"
EXAMPLE = "7K3M-QX2P-A9TB-R4WD-HE6C"


class RecoveryCode(BaseModel):
    code: str = Field(examples=[EXAMPLE])


class RecoverBody(BaseModel):
    code: str = Field(
        strict=True, max_length=MAX_CODE_INPUT, examples=[EXAMPLE], description="Any case, with or without dashes"
    )


def new_code() -> str:
    """A fresh code in its canonical form."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def grouped(code: str) -> str:
    """The code as the player sees it: groups joined by dashes."""
    return "-".join(code[start : start + GROUP_LENGTH] for start in range(0, CODE_LENGTH, GROUP_LENGTH))


def canonical(typed: str) -> str | None:
    """The code as it is hashed (20 characters, upper case, no separators); None if `typed` is none."""
    if not typed.isascii():
        return None
    code = SEPARATORS.sub("", typed).upper().translate(LOOKALIKES)
    return code if CANONICAL.fullmatch(code) else None


class CodeHasher:
    """HMAC-SHA256 under a key of its own, derived from the session secret (not the cookies' key)."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"cache-quest recovery codes", hashlib.sha256).digest()

    def hash(self, code: str) -> str:
        return hmac.new(self._key, code.encode(), hashlib.sha256).hexdigest()

    def prefix(self, code: str) -> str:
        """What the per-prefix limit counts under: the first group, hashed too, so no key names it."""
        return self.hash(code[:GROUP_LENGTH])[:16]


class Recovery:
    """What the routes share, made once at start-up: the cookie signer, the hasher, the limits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cookies = SessionCookies(settings)
        self.hasher = CodeHasher(settings.session_secret or stored_secret(settings.session_secret_file))
        self.ttl_s = settings.recovery_ttl_days * 86400
        self.issues = parse_rate(settings.rate_limit_session_writes)
        self.per_address = parse_rate(settings.rate_limit_address_recoveries)
        self.per_prefix = parse_rate(settings.rate_limit_prefix_recoveries)
