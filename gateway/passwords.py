"""Account passwords: argon2id hashes, and their verification.

`verify_password` is CPU-bound (~40 ms): callers run it on the bounded password pool (`gateway.password_checks`),
never on the event loop. `_DUMMY_HASH` is checked when the user does not exist.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# One of OWASP's equivalent argon2id settings (12 MiB, 3 passes): ~40 ms here, and a small transient
# allocation per check, so concurrent password uploads do not balloon memory.
_HASHER = PasswordHasher(memory_cost=12288, time_cost=3, parallelism=1)
# Verified against when the user does not exist, so a wrong name costs as long as a wrong password: the same
# hasher, so the same parameters (tests/test_password_checks.py checks), on the same pool.
_DUMMY_HASH = _HASHER.hash("not a real password")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
