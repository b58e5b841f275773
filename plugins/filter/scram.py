"""SCRAM-SHA-256 verifiers computed on the controller: no plaintext password reaches the
server, so none can land in its log (pgaudit's role class logs ALTER ROLE statements).

``scram_verifier(password, existing)`` returns ``existing`` when that stored verifier
already matches the password (so a re-run changes nothing), else a new verifier with a
random salt, in PostgreSQL's format::

    SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>

PostgreSQL normalises passwords with SASLprep; for ASCII passwords that is the identity.
Other passwords are returned unchanged (the server hashes them itself) rather than risk
a verifier the server would compute differently.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

PREFIX = "SCRAM-SHA-256$"
ITERATIONS = 4096  # PostgreSQL's scram_iterations default


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return stored_key, server_key


def _format(salt: bytes, iterations: int, stored: bytes, server: bytes) -> str:
    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"{PREFIX}{iterations}:{b64(salt)}${b64(stored)}:{b64(server)}"


def scram_matches(password: str, verifier: str) -> bool:
    """Whether a stored SCRAM-SHA-256 verifier belongs to this password."""
    if not isinstance(verifier, str) or not verifier.startswith(PREFIX):
        return False
    try:
        params, keys = verifier[len(PREFIX) :].split("$", 1)
        iterations, salt = params.split(":", 1)
        stored, server = (base64.b64decode(part) for part in keys.split(":", 1))
        mine = _keys(password, base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(mine[0], stored) and hmac.compare_digest(mine[1], server)


def scram_verifier(password: Any, existing: Any = None, salt: bytes | None = None) -> str:
    """The verifier to store for ``password`` (``existing`` if it already matches)."""
    text = str(password)
    if text.startswith(PREFIX) or not text.isascii():
        return text
    if existing and scram_matches(text, str(existing)):
        return str(existing)
    salt = salt if salt is not None else os.urandom(16)
    return _format(salt, ITERATIONS, *_keys(text, salt, ITERATIONS))


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {"scram_verifier": scram_verifier}
