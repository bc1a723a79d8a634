"""What the authorization server keeps: a few ``auth_*`` tables in the store's SQLite file.

The FHIR store never reads them and nothing outside ``fhir_hub/auth`` writes them; this module
is the only place with their SQL. Secrets are never stored as given: user passwords as scrypt
hashes, authorization codes and refresh tokens as SHA-256 digests (they are long random values,
so a digest is enough), signing keys as JWKs in the file (which holds the patients' data anyway,
so it must already be protected like a secret).

Calls are synchronous and short; the authorization endpoints are rare next to FHIR reads, and
the enforcement point only asks for new revocations at most once a second.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson

_SCHEMA = """
CREATE TABLE IF NOT EXISTS auth_keys (kid TEXT PRIMARY KEY, alg TEXT NOT NULL, jwk TEXT NOT NULL,
    created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS auth_clients (client_id TEXT PRIMARY KEY, name TEXT NOT NULL,
    redirect_uris TEXT NOT NULL, jwks TEXT, scope TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS auth_users (national_id TEXT PRIMARY KEY, patient TEXT NOT NULL,
    name TEXT NOT NULL, password TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS auth_codes (code TEXT PRIMARY KEY, grant_json TEXT NOT NULL,
    expires INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS auth_refresh (token TEXT PRIMARY KEY, family TEXT NOT NULL,
    grant_json TEXT NOT NULL, expires INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS auth_refresh_family ON auth_refresh (family);
CREATE TABLE IF NOT EXISTS auth_access (jti TEXT PRIMARY KEY, family TEXT, client_id TEXT NOT NULL,
    expires INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS auth_access_family ON auth_access (family);
CREATE TABLE IF NOT EXISTS auth_revoked (seq INTEGER PRIMARY KEY AUTOINCREMENT, jti TEXT NOT NULL UNIQUE,
    expires INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS auth_assertions (client_id TEXT NOT NULL, jti TEXT NOT NULL,
    expires INTEGER NOT NULL, PRIMARY KEY (client_id, jti));
"""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    h = hashlib.scrypt(password.encode(), salt=salt, n=2 ** 14, r=8, p=1)
    return f"scrypt$16384$8$1${salt.hex()}${h.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, h = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), h)


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    name: str
    redirect_uris: tuple[str, ...]
    #: Public keys for ``private_key_jwt`` (a JWK Set), or ``None`` for a public client.
    jwks: dict[str, Any] | None
    #: Scopes the client may be granted (space-separated; may use ``*`` types).
    scope: str


@dataclass(frozen=True, slots=True)
class User:
    national_id: str
    patient: str
    name: str


class AuthStore:
    """The tiny storage interface of ``fhir_hub.auth`` over one SQLite file."""

    def __init__(self, path: str):
        self._db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def _one(self, sql: str, *args: Any) -> Any:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _all(self, sql: str, *args: Any) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _run(self, sql: str, *args: Any) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    # --- signing keys ---------------------------------------------------------------------------

    def keys(self) -> list[tuple[str, str, dict[str, Any]]]:
        """``(kid, alg, private JWK)``, newest first."""
        return [(k, a, orjson.loads(j)) for k, a, j in
                self._all("SELECT kid, alg, jwk FROM auth_keys ORDER BY created DESC, kid")]

    def add_key_if_none(self, kid: str, alg: str, jwk: dict[str, Any]) -> None:
        """Store a first key unless another process stored one meanwhile."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._db.execute("SELECT 1 FROM auth_keys").fetchone() is None:
                    self._db.execute("INSERT INTO auth_keys VALUES (?, ?, ?, ?)",
                                     (kid, alg, orjson.dumps(jwk).decode(), int(time.time())))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # --- clients and users ----------------------------------------------------------------------

    def put_client(self, client: Client) -> None:
        self._run("INSERT OR REPLACE INTO auth_clients VALUES (?, ?, ?, ?, ?, ?)", client.client_id, client.name,
                  orjson.dumps(list(client.redirect_uris)).decode(),
                  orjson.dumps(client.jwks).decode() if client.jwks is not None else None,
                  client.scope, int(time.time()))

    def client(self, client_id: str) -> Client | None:
        row = self._one("SELECT client_id, name, redirect_uris, jwks, scope FROM auth_clients WHERE client_id = ?",
                        client_id)
        return _client(row) if row else None

    def clients(self) -> list[Client]:
        return [_client(r) for r in self._all("SELECT client_id, name, redirect_uris, jwks, scope FROM auth_clients "
                                              "ORDER BY client_id")]

    def remove_client(self, client_id: str) -> bool:
        return self._run("DELETE FROM auth_clients WHERE client_id = ?", client_id) > 0

    def put_user(self, national_id: str, patient: str, name: str, password: str) -> None:
        self._run("INSERT OR REPLACE INTO auth_users VALUES (?, ?, ?, ?, ?)", national_id, patient, name,
                  hash_password(password), int(time.time()))

    def login(self, national_id: str, password: str) -> User | None:
        row = self._one("SELECT national_id, patient, name, password FROM auth_users WHERE national_id = ?",
                        national_id)
        if row is None:
            check_password(password, hash_password("timing"))  # same work whether the user exists or not
            return None
        return User(row[0], row[1], row[2]) if check_password(password, row[3]) else None

    def user(self, national_id: str) -> User | None:
        row = self._one("SELECT national_id, patient, name FROM auth_users WHERE national_id = ?", national_id)
        return User(*row) if row else None

    def users(self) -> list[User]:
        return [User(*r) for r in self._all("SELECT national_id, patient, name FROM auth_users ORDER BY national_id")]

    # --- authorization codes --------------------------------------------------------------------

    def add_code(self, code: str, grant: dict[str, Any], expires: int) -> None:
        self._run("INSERT INTO auth_codes (code, grant_json, expires) VALUES (?, ?, ?)", digest(code),
                  orjson.dumps(grant).decode(), expires)

    def take_code(self, code: str) -> tuple[dict[str, Any], int, bool] | None:
        """The code's grant, expiry and whether it had been used before; marks it used."""
        key = digest(code)
        with self._lock:
            row = self._db.execute("SELECT grant_json, expires, used FROM auth_codes WHERE code = ?", (key,)).fetchone()
            if row is None:
                return None
            self._db.execute("UPDATE auth_codes SET used = 1 WHERE code = ?", (key,))
        return orjson.loads(row[0]), row[1], bool(row[2])

    # --- refresh tokens, issued access tokens, revocations ---------------------------------------

    def add_refresh(self, token: str, family: str, grant: dict[str, Any], expires: int) -> None:
        self._run("INSERT INTO auth_refresh (token, family, grant_json, expires) VALUES (?, ?, ?, ?)", digest(token),
                  family, orjson.dumps(grant).decode(), expires)

    def take_refresh(self, token: str) -> tuple[str, dict[str, Any], int, bool] | None:
        """``(family, grant, expires, used before)``; marks it used (rotation)."""
        key = digest(token)
        with self._lock:
            row = self._db.execute("SELECT family, grant_json, expires, used FROM auth_refresh WHERE token = ?",
                                   (key,)).fetchone()
            if row is None:
                return None
            self._db.execute("UPDATE auth_refresh SET used = 1 WHERE token = ?", (key,))
        return row[0], orjson.loads(row[1]), row[2], bool(row[3])

    def peek_refresh(self, token: str) -> tuple[str, dict[str, Any], int, bool] | None:
        row = self._one("SELECT family, grant_json, expires, used FROM auth_refresh WHERE token = ?", digest(token))
        return (row[0], orjson.loads(row[1]), row[2], bool(row[3])) if row else None

    def add_access(self, jti: str, family: str | None, client_id: str, expires: int) -> None:
        self._run("INSERT INTO auth_access VALUES (?, ?, ?, ?)", jti, family, client_id, expires)

    def revoke_family(self, family: str) -> list[str]:
        """Every refresh token of the family used up, and its access tokens revoked; their jtis."""
        with self._lock:
            self._db.execute("UPDATE auth_refresh SET used = 1 WHERE family = ?", (family,))
            rows = self._db.execute("SELECT jti, expires FROM auth_access WHERE family = ?", (family,)).fetchall()
            self._db.executemany("INSERT OR IGNORE INTO auth_revoked (jti, expires) VALUES (?, ?)", rows)
        return [r[0] for r in rows]

    def revoke_access(self, jti: str, expires: int) -> None:
        self._run("INSERT OR IGNORE INTO auth_revoked (jti, expires) VALUES (?, ?)", jti, expires)

    def access_family(self, jti: str) -> str | None:
        row = self._one("SELECT family FROM auth_access WHERE jti = ?", jti)
        return row[0] if row else None

    def is_revoked(self, jti: str) -> bool:
        return self._one("SELECT 1 FROM auth_revoked WHERE jti = ?", jti) is not None

    def revoked_since(self, seq: int) -> tuple[int, list[str]]:
        rows = self._all("SELECT seq, jti FROM auth_revoked WHERE seq > ? ORDER BY seq", seq)
        return (rows[-1][0] if rows else seq), [r[1] for r in rows]

    # --- client assertions ----------------------------------------------------------------------

    def first_use_of_assertion(self, client_id: str, jti: str, expires: int) -> bool:
        """Record an assertion's ``jti``; ``False`` if the client used it before (a replay)."""
        try:
            self._run("INSERT INTO auth_assertions VALUES (?, ?, ?)", client_id, jti, expires)
        except sqlite3.IntegrityError:
            return False
        return True

    def purge(self, now: int) -> None:
        """Drop what expired a day ago (codes, tokens, assertion jtis, revocations)."""
        cutoff = now - 86_400
        with self._lock:
            for table in ("auth_codes", "auth_refresh", "auth_access", "auth_assertions"):
                self._db.execute(f"DELETE FROM {table} WHERE expires < ?", (cutoff,))


def _client(row: Any) -> Client:
    return Client(row[0], row[1], tuple(orjson.loads(row[2])), orjson.loads(row[3]) if row[3] else None, row[4])


__all__ = ["AuthStore", "Client", "User", "check_password", "digest", "hash_password"]
