"""The one enforcement point: every FHIR request passes :meth:`Enforcer.check` before dispatch.

It fails closed. A request it cannot classify is refused; so is anything this slice cannot
restrict properly under a patient's token. In order:

1. **The token**: ``Authorization: Bearer`` with an access token (``typ`` ``at+jwt``) signed by
   one of our keys with RS256 (so never ``alg=none``), not expired, not revoked, ``iss`` our
   authorization server and ``aud`` this FHIR base. Otherwise 401 with an OperationOutcome and
   ``WWW-Authenticate: Bearer``. ``/metadata`` alone is open.
2. **The scopes** (``fhir_hub.auth.scopes``): the interaction needs its permission on its type
   (read/vread/instance history ``r``, search and type history ``s``, create ``c``, update and
   patch ``u``, delete ``d``; conditional forms also ``s``). A system token (Backend Services)
   uses its ``system/`` scopes, a patient token its ``patient/`` scopes. Missing: 403.
3. **The patient's compartment** (patient tokens): a read of ``Type/id`` runs the compartment
   membership check (the R4 Patient CompartmentDefinition's parameters, as the compartment
   search uses them; the patient's own Patient resource is in it) together with any v2 query
   restriction; outside it the answer is 404 whether or not the resource exists. A search is
   routed as the compartment search ``Patient/[patient]/Type`` with the restriction's parameters
   added. Types never in a Patient compartment are refused (403). ``Patient.link``: with
   reconciliation on, a token whose patient is a golden record reaches the sources it links
   (``seealso``) and the golden records merged into it (``replaces``), read at each request, by
   id as the compartment search does; a source's token reaches that source only. Links made by
   other systems, with reconciliation off, give no access.
4. **AuditEvents** are written by the server only (every write of one: 405) and read by
   stewards only: a system token whose scopes name ``AuditEvent`` itself (``system/*`` does
   not). Other tokens are refused searches, includes, ``_has`` and ``_type`` that would reach
   them, ``Patient/[id]/*`` and the system history; their ``$everything`` leaves them out.
5. **Reconciliation's operations**: ``$match``, ``$mpi-explain`` and ``$mpi-review`` need a
   system token's unrestricted Patient read and search; ``$mpi-link|unlink|merge|unmerge`` also
   update, and their ``actor`` is set to ``client <client_id>`` (the AuditEvent's agent).
6. **Rate limits** (``FHIR_HUB_RATE_LIMIT``): after the token, the client's bucket pays the
   request's cost or the answer is 429 (``auth/limits.py``).
7. **Bundles**: each entry is classified and checked the same way; one refused entry refuses
   the bundle. A search entry gets a system token's query restriction added; under a patient's
   token search entries are refused (the bundle handler has no compartment search), reads by id
   are checked like reads.

Refused under patient tokens in this slice (403), because they could return resources outside
the compartment: ``_include``, ``_revinclude`` (and ``:iterate``), chained parameters, ``_has``,
system-level search and history, type history, ``Patient/$everything``, type-level ``$validate``,
``$reindex`` and every write. Instance ``$validate`` (it writes nothing) is open to a patient's token
with read access to the instance, without ``mode`` (see :meth:`Enforcer._validate`), and to system
tokens with an unrestricted ``system/*`` read scope. ``$import-legacy`` (submitting a job and
polling it) needs unrestricted ``system/*`` create and update scopes. ``Patient/[id]/$summary`` and ``Patient/[id]/$everything`` are open to a patient's
token for its own patient with an unrestricted ``patient/*`` read scope (another patient's: 404). System tokens need an
unrestricted ``system/*`` read+search scope for the same features, and write scopes without a
query restriction.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from fhir_hub import definitions
from fhir_hub.auth.compartment import admits_version
from fhir_hub.auth.keys import ACCESS_TYP, InvalidToken, Keys
from fhir_hub.auth.limits import RateLimits, cost
from fhir_hub.auth.scopes import ScopeError, Scopes, parse_scopes
from fhir_hub.auth.server import auth_base
from fhir_hub.auth.storage import AuthStore
from fhir_hub.errors import FhirError, error
from fhir_hub.rest.wire import Request, parse_json
from fhir_hub.search import extract, matcher
from fhir_hub.search.parse import parse
from fhir_hub.search.query import Criterion
from fhir_hub.storage.port import StoredVersion

_REALM = 'Bearer realm="fhir-hub"'
_WORDS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
_TERMINOLOGY = frozenset({"CodeSystem", "ValueSet", "ConceptMap"})
#: Written by the server only, read by stewards only.
AUDIT = "AuditEvent"
#: Patient reconciliation's operations (``rest/mpi.py``): reads, then a steward's decisions.
_MPI_READS = frozenset({"$match", "$mpi-explain"})
_MPI_OPERATIONS = _MPI_READS | {"$mpi-link", "$mpi-unlink", "$mpi-merge", "$mpi-unmerge"}
#: Verified tokens kept in memory, least recently used dropped first (the signature is checked
#: once per token, not per request).
_CACHE_MAX = 10_000
#: Per token: decisions by type (scope restrictions, read guards), at most this many.
_MEMO_MAX = 64
#: :meth:`Enforcer.quick` finds a token's entry by this many last characters of the
#: ``Authorization`` header (the end of the JWT's signature), then compares the whole header:
#: hashing a few characters instead of the whole ~850-character token each request.
_TAIL = 24
_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified access token speaks for."""

    jti: str
    client_id: str
    scopes: Scopes
    #: The patient in context (patient tokens), else ``None`` (system tokens).
    patient: str | None
    exp: int
    iss: str
    aud: str | tuple[str, ...]
    #: What the enforcer derived from the scopes, by type: kept as long as the token is cached.
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def context(self) -> str:
        return "system" if self.patient is None else "patient"


def unauthorized(description: str | None) -> FhirError:
    challenge = _REALM if description is None else \
        f'{_REALM}, error="invalid_token", error_description="{description}"'
    return FhirError(401, error("login", description or "this server needs an access token (Authorization: "
                                "Bearer)"), {"WWW-Authenticate": challenge})


def forbidden(description: str, *where: str) -> FhirError:
    return FhirError(403, error("forbidden", description, *where),
                     {"WWW-Authenticate": f'{_REALM}, error="insufficient_scope"'})


def hidden(rtype: str, rid: str) -> FhirError:
    """The answer for a resource outside the token's reach: the same as for one that does not exist."""
    return FhirError(404, error("not-found", f"{rtype}/{rid} is not known"))


def _steward(p: Principal, perm: str) -> bool:
    """A steward's token: a system token whose scopes name AuditEvent itself (``system/*`` does not)."""
    return p.patient is None and any(s.rtype == AUDIT and perm in s.permissions and not s.query
                                     for s in p.scopes.of("system"))


def _reaches_audit(pairs: list[tuple[str, str]]) -> str | None:
    """A parameter that would bring AuditEvents into an answer: an include from or of them (or a
    wildcard one), ``_has:AuditEvent``, or ``_type`` naming them."""
    for name, value in pairs:
        head = name.split(":")[0]
        if head in ("_include", "_revinclude") and (value.startswith((f"{AUDIT}:", "*")) or f":{AUDIT}" in value):
            return name
        if name.startswith(f"_has:{AUDIT}:") or (head == "_type" and AUDIT in value.split(",")):
            return name
    return None


def _broad(pairs: list[tuple[str, str]]) -> str | None:
    """The first parameter that reaches beyond the matches themselves (includes, chains, _has)."""
    for name, _ in pairs:
        head = name.split(":")[0]
        if head in ("_include", "_revinclude") or head.startswith("_has") or "." in name:
            return name
    return None


class _Entry:
    """A cached verified token: its principal, the last base URL its ``aud`` and ``iss`` passed for,
    and the read guards :meth:`Enforcer.check` decided for that base, by type (:meth:`Enforcer.quick`)."""

    __slots__ = ("base", "exp", "header", "jti", "principal", "reads", "token")

    def __init__(self, token: str, principal: Principal):
        #: The key of this entry in :attr:`Enforcer._cache` (the same string object: its hash is kept).
        self.token = token
        self.principal = principal
        self.exp = principal.exp
        self.jti = principal.jti
        self.base: str | None = None
        #: By resource type: the guard of a read by id (``None``: none needed), for ``base``.
        self.reads: dict[str, Admit | None] = {}
        #: The exact ``Authorization`` header this entry is in :attr:`Enforcer._quick` under, if any.
        self.header: str | None = None


Admit = Callable[[StoredVersion | None], bool]


@dataclass(slots=True)
class GuardedRequest(Request):
    """A read by id whose access the stored version decides: ``rest/read.py`` passes the version
    it fetched to ``admit`` and answers 404 (as for a missing resource) unless it is admitted, so
    the check needs no query of its own."""

    admit: Admit | None = None


class _Admit:
    """The read guard of one type under one token's scopes: the current version is admitted when
    it exists, is in the patient's compartment (patient tokens, types other than Patient) and
    matches one of the scopes' query restrictions (if any)."""

    __slots__ = ("criteria", "indexer", "one", "rtype", "targets")

    def __init__(self, rtype: str, patients: tuple[str, ...], criteria: list[list[Criterion]] | None,
                 indexer: Any):
        self.rtype = rtype
        #: ``(target, needle, suffix)`` per Patient id whose compartment counts (none: no compartment check)
        self.targets = tuple((t, t.encode(), "/" + t) for t in (f"Patient/{p}" for p in patients)) \
            if rtype != "Patient" else ()
        #: The one target when there is one (the usual case: no generator per read)
        self.one = self.targets[0] if len(self.targets) == 1 else None
        self.criteria = criteria
        self.indexer = indexer

    def __call__(self, v: StoredVersion | None) -> bool:
        if v is None or v.body is None:
            return False  # missing or deleted: one answer, 404
        one = self.one
        if one is not None:
            if not admits_version(v, "Patient", one[0], one[1], one[2]):  # decided once per version
                return False
        elif self.targets and not any(admits_version(v, "Patient", *t) for t in self.targets):
            return False
        if self.criteria is None:
            return True
        resource = orjson.loads(v.body)
        subject = matcher.Indexed(f"{self.rtype}/{v.rid}", matcher.group(self.indexer.rows(self.rtype, resource)),
                                  resource)
        env = matcher.Env(component_rows=extract.component_rows)
        for criteria in self.criteria:
            try:
                if matcher.matches(criteria, subject, env):
                    return True
            except ValueError:  # chains or _has in a restriction: not evaluated here, so not granted
                continue
        return False


class Enforcer:
    def __init__(self, store: AuthStore, keys: Keys, base_path: str, revoked: set[str],
                 limits: RateLimits | None = None):
        self.store = store
        self.keys = keys
        self.base_path = base_path
        self.revoked = revoked
        #: Per-client rate limits (``FHIR_HUB_RATE_LIMIT``), or ``None``.
        self.limits = limits
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        #: The entries with read guards, by the last :data:`_TAIL` characters of the exact header
        #: they were decided for (:meth:`quick`); only ever entries that are in :attr:`_cache`.
        self._quick: dict[str, _Entry] = {}
        self._seq = 0
        self._polled = 0.0

    # --- the token --------------------------------------------------------------------------------

    def _poll_revocations(self, now: float) -> None:
        """Revocations by other processes (workers) are seen within about a second."""
        if now - self._polled >= 1.0:
            self._polled = now
            self._seq, jtis = self.store.revoked_since(self._seq)
            self.revoked.update(jtis)

    def principal(self, req: Request) -> Principal:
        return self._entry(req).principal

    def _entry(self, req: Request) -> _Entry:
        """The cache entry of the request's access token, verified (signature once, then expiry,
        revocation, ``aud`` and ``iss`` at each request); else 401."""
        header = req.headers.get("authorization")
        if not header or header[:7].lower() != "bearer ":
            raise unauthorized(None)
        token = header[7:].strip()
        now = time.time()
        self._poll_revocations(now)
        entry = self._cache.get(token)
        if entry is None:
            try:
                claims = self.keys.verify(token, ACCESS_TYP, now)
                scopes = parse_scopes(str(claims.get("scope", "")))
            except (InvalidToken, ScopeError) as exc:
                raise unauthorized(str(exc)) from None
            aud = claims.get("aud")
            patient = claims.get("patient")
            p = Principal(str(claims.get("jti")), str(claims.get("client_id")), scopes,
                          patient if isinstance(patient, str) else None, int(claims["exp"]), str(claims.get("iss")),
                          tuple(aud) if isinstance(aud, list) else str(aud))
            entry = self._cache[token] = _Entry(token, p)
            if len(self._cache) > _CACHE_MAX:
                self._unquick(self._cache.popitem(last=False)[1])
        else:
            self._cache.move_to_end(token)
            p = entry.principal
        if p.exp <= now:
            self._unquick(self._cache.pop(token, entry))
            raise unauthorized("the token has expired")
        if p.jti in self.revoked:
            raise unauthorized("the token was revoked")
        base = req.base_url
        if entry.base != base:
            if p.aud != base and not (isinstance(p.aud, tuple) and base in p.aud):
                raise unauthorized("the token was issued for another server (aud)")
            if p.iss != auth_base(base, self.base_path):
                raise unauthorized("the token was issued by another authorization server (iss)")
            entry.base = base
            entry.reads = {}
        return entry

    def _unquick(self, entry: _Entry) -> None:
        """Take ``entry`` (leaving the cache) out of the quick index."""
        if entry.header is not None and self._quick.get(entry.header[-_TAIL:]) is entry:
            del self._quick[entry.header[-_TAIL:]]
        entry.header = None

    def peek(self, headers: dict[str, str]) -> Principal | None:
        """The principal of a bearer token :meth:`principal` accepted before (for the audit), else ``None``."""
        header = headers.get("authorization")
        if not header or header[:7].lower() != "bearer ":
            return None
        entry = self._cache.get(header[7:].strip())
        return entry.principal if entry is not None and entry.base is not None else None

    # --- the interaction --------------------------------------------------------------------------

    def quick(self, req: Request) -> Request | None:
        """A read by id (``GET``/``HEAD Type/id``) under a token already verified for this base and
        whose read guard of that type :meth:`check` already made: the request to dispatch, decided
        as :meth:`check` decides it but with no coroutine, scope lookup or guard building of its
        own. ``None``: anything else, or a token now expired or revoked (:meth:`check` refuses it).
        Expiry, revocation (as seen by :meth:`_poll_revocations`) and the rate limit are checked
        here at every request, as there."""
        seg = req.segments
        if len(seg) != 2 or (req.method != "GET" and req.method != "HEAD"):
            return None
        header = req.headers.get("authorization")
        if header is None:
            return None
        entry = self._quick.get(header[-_TAIL:])
        # the whole header, compared: exactly the token check() verified, for this base
        if entry is None or entry.header != header or entry.base != req.base_url:
            return None
        first = seg[1][:1]
        if first == "_" or first == "$":
            return None
        admit = entry.reads.get(seg[0], _UNSET)
        if admit is _UNSET:
            return None
        now = time.time()
        if now - self._polled >= 1.0:
            self._poll_revocations(now)
        if entry.exp <= now or entry.jti in self.revoked:
            return None
        self._cache.move_to_end(entry.token)  # the key object itself: its hash is not computed again
        if self.limits is not None:
            self.limits.take(entry.principal.client_id, cost(req.method, seg, req.query, req.body))
        if admit is None:
            return req
        return GuardedRequest(req.method, seg, req.query, req.headers, req.body, req.base_url, req.raw_query, admit)

    def _index(self, entry: _Entry, header: str) -> None:
        """Let :meth:`quick` find ``entry`` (in the cache, with read guards) by ``header``, the exact
        ``Authorization`` header :meth:`_entry` accepted for it."""
        if entry.header == header:
            return
        if self._cache.get(entry.token) is not entry:
            return  # not (or no longer) the cached entry of its token
        self._unquick(entry)
        tail = header[-_TAIL:]
        other = self._quick.get(tail)
        if other is not None:
            other.header = None  # another token ending alike: the newer one is indexed
        self._quick[tail] = entry
        entry.header = header

    async def check(self, hub: Any, req: Request) -> Request:
        """The request to dispatch (possibly narrowed to the patient's compartment), or a FhirError."""
        seg = req.segments
        method = req.method
        if method == "GET" or method == "HEAD":
            if len(seg) == 1 and seg[0] == "metadata":
                return req
            entry = self._entry(req)
            p = entry.principal
            if self.limits is not None:
                self.limits.take(p.client_id, cost(method, seg, req.query, req.body))
            if len(seg) == 2 and seg[1][:1] not in ("_", "$") and seg[0][:1] != "_":
                # read by id: decided on the version the read fetches (GuardedRequest), no query here
                person = () if p.patient is None else (p.patient,) if not hub.settings.mpi else \
                    await self._person(hub, p)
                admit = self._admit(hub, req, p, seg[0], seg[1], person)
                if not hub.settings.mpi and (p.patient is None or seg[0] != "Patient") and \
                        len(entry.reads) < _MEMO_MAX:
                    # the same for every id of the type (a patient's own Patient depends on the id;
                    # with reconciliation on, the reach is read at each request): quick() reuses it
                    entry.reads[seg[0]] = admit
                    self._index(entry, req.headers["authorization"])
                if admit is None:
                    return req
                return GuardedRequest(method, seg, req.query, req.headers, req.body, req.base_url, req.raw_query,
                                      admit)
        else:
            p = self.principal(req)
            if self.limits is not None:
                self.limits.take(p.client_id, cost(method, seg, req.query, req.body))
        if req.method == "POST" and not seg:
            return await self._bundle(hub, req, p)
        if req.method == "POST" and len(seg) == 2 and seg[0] == "Patient" and seg[1] in _MPI_OPERATIONS:
            return self._mpi(req, p, seg[1])
        pairs = list(req.query)
        if req.method == "POST" and seg and seg[-1] == "_search" and \
                req.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            pairs += parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True)
        new_seg, extra = await self._decide(hub, req, p, req.method, seg, pairs)
        if new_seg == seg and not extra:
            return req
        return replace(req, segments=new_seg, query=[*req.query, *extra],
                       raw_query="&".join(x for x in (req.raw_query, urlencode(extra)) if x))

    def _need(self, p: Principal, rtype: str, perm: str) -> list[tuple[tuple[str, str], ...]] | None:
        """The restrictions on ``perm`` for ``rtype`` (``None``: unrestricted); 403 if not granted."""
        key = (rtype, perm)
        found = p.memo.get(key, _UNSET)
        if found is _UNSET:
            found = p.scopes.restrictions(p.context, rtype, perm)
            if rtype == AUDIT and not _steward(p, perm):
                found = []
            if len(p.memo) < _MEMO_MAX:
                p.memo[key] = found
        if found == []:
            if rtype == AUDIT:
                raise forbidden(f"AuditEvent resources are for stewards: a system token with a system/AuditEvent "
                                f"scope that allows {_WORDS[perm]}")
            raise forbidden(f"the token's scopes do not allow {_WORDS[perm]} on {rtype}")
        return found

    def _wide(self, p: Principal, what: str) -> None:
        if p.patient is not None:
            raise forbidden(f"{what} is not available with a patient's token in this version of the server")
        if not p.scopes.wildcard("system", "rs"):
            raise forbidden(f"{what} needs an unrestricted system/*.rs scope")

    async def _decide(self, hub: Any, req: Request, p: Principal, method: str, seg: list[str],
                      pairs: list[tuple[str, str]]) -> tuple[list[str], list[tuple[str, str]]]:
        n = len(seg)
        if seg[:1] == ["$import-legacy"] and ((method == "POST" and n == 1) or (method in ("GET", "HEAD") and n == 2)):
            # the job writes any type, and its result names what it wrote
            if p.patient is not None or not p.scopes.wildcard("system", "cu"):
                raise forbidden("$import-legacy needs unrestricted system/*.c and system/*.u scopes")
            return seg, []
        if method in ("GET", "HEAD"):
            if n == 2 and seg[1][:1] not in ("_", "$") and seg[0][:1] != "_":
                await self._read(hub, req, p, seg[0], seg[1])
                return seg, []
            if (n == 4 or n == 3) and seg[2] == "_history":
                await self._read(hub, req, p, seg[0], seg[1])
                return seg, []
            if n == 1 and seg[0][:1] not in ("_", "$"):
                return self._search(p, method, seg[0], None, pairs)
            if n == 3 and seg[2][:1] != "$":
                return self._search(p, method, seg[2], (seg[0], seg[1]), pairs)
            if n == 2 and seg[1][:1] == "$" and seg[0] in _TERMINOLOGY:
                return seg, []
            if n == 2 and seg[1] == "_history":
                if p.patient is not None:
                    raise forbidden("type history is not available with a patient's token in this version")
                if self._need(p, seg[0], "s") is not None:
                    raise forbidden(f"type history needs an unrestricted search scope on {seg[0]}")
                return seg, []
            if seg == ["$mpi-review"]:
                self._mpi_access(p, "$mpi-review", "rs")
                return seg, []
            if n == 3 and seg[0] == "Patient" and seg[2] == "$summary":
                self._own(p, seg[1], "$summary")
                return seg, []
            if n == 2 and seg == ["Patient", "$summary"]:
                if p.patient is None:
                    self._wide(p, "$summary")
                    return seg, []
                if any(k == "identifier" for k, _ in pairs):
                    raise forbidden("a patient's token asks for its own summary: Patient/$summary without an "
                                    "identifier, or Patient/[id]/$summary", "identifier")
                self._own(p, p.patient, "$summary")
                return ["Patient", p.patient, "$summary"], []
            if n == 3 and seg[0] == "Patient" and seg[2] == "$everything" and p.patient is not None:
                self._own(p, seg[1], "$everything")
                return seg, self._audit_aside(p, seg, pairs)
            if n == 0 or (n == 1 and seg[0] == "_history") or (seg[:1] == ["Patient"] and seg[-1] == "$everything"):
                self._wide(p, "this interaction")
                return seg, self._audit_aside(p, seg, pairs)
        elif method == "POST":
            if n == 2 and seg[1][:1] == "$" and seg[0] in _TERMINOLOGY:
                return seg, []
            if n == 1 and seg[0] == "_search":
                self._wide(p, "system-level search")
                return seg, self._audit_aside(p, seg, pairs)
            if n == 2 and seg[1] == "_search":
                return self._search(p, method, seg[0], None, pairs)
            if n == 4 and seg[3] == "_search":
                return self._search(p, method, seg[2], (seg[0], seg[1]), pairs)
            if n == 2 and seg[1] == "$validate":
                if p.patient is not None:
                    raise forbidden("$validate is not available with a patient's token in this version")
                self._need(p, seg[0], "r")
                return seg, []
            if n == 3 and seg[2] == "$validate" and seg[1][:1] not in ("_", "$"):
                await self._validate(hub, req, p, seg[0], seg[1])
                return seg, []
            if (n == 1 and seg[0] == "$reindex") or (n == 2 and seg[1] == "$reindex"):
                if p.patient is not None or not p.scopes.wildcard("system", "u"):
                    raise forbidden("$reindex needs an unrestricted system/*.u scope")
                return seg, []
            if n == 1 and seg[0][:1] not in ("_", "$"):
                self._write(p, seg[0], "c", conditional="if-none-exist" in req.headers)
                return seg, []
        elif method in ("PUT", "PATCH", "DELETE") and n in (1, 2) and seg[0][:1] not in ("_", "$"):
            self._write(p, seg[0], "d" if method == "DELETE" else "u", conditional=n == 1)
            return seg, []
        raise forbidden(f"{method} /{'/'.join(seg)} is not an interaction this server authorizes")

    def _mpi_access(self, p: Principal, operation: str, perms: str) -> None:
        if p.patient is not None:
            raise forbidden(f"{operation} is not available with a patient's token")
        for perm in perms:
            if self._need(p, "Patient", perm) is not None:
                raise forbidden(f"{operation} needs unrestricted {_WORDS[perm]} scopes on Patient")

    def _mpi(self, req: Request, p: Principal, operation: str) -> Request:
        """Reconciliation's operations: ``$match`` and ``$mpi-explain`` need unrestricted Patient
        read and search; a link, unlink, merge or unmerge also update, and its ``actor`` (the
        name its AuditEvent records) becomes the client's, whatever the body said."""
        if operation in _MPI_READS:
            self._mpi_access(p, operation, "rs")
            return req
        self._mpi_access(p, operation, "rsu")
        try:
            body = orjson.loads(req.body)
        except orjson.JSONDecodeError:
            return req  # the operation reports what is wrong with it
        if not isinstance(body, dict) or not isinstance(body.get("parameter", []), list):
            return req
        params = [x for x in body.get("parameter", []) if not (isinstance(x, dict) and x.get("name") == "actor")]
        body["parameter"] = [*params, {"name": "actor", "valueString": f"client {p.client_id}"}]
        return replace(req, body=orjson.dumps(body))

    @staticmethod
    def _no_audit(p: Principal, pairs: list[tuple[str, str]]) -> None:
        reach = _reaches_audit(pairs)
        if reach is not None and not _steward(p, "s"):
            raise forbidden(f"{reach} would reach AuditEvent resources, which are for stewards", reach)

    def _audit_aside(self, p: Principal, seg: list[str], pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """What keeps AuditEvents out of a system search, system history or ``$everything`` for a
        token that is not a steward's: the ``_type`` a search or ``$everything`` must not name them
        with (``$everything`` without one gets every other type), and no system history."""
        if _steward(p, "s"):
            return []
        if seg == ["_history"]:
            raise forbidden("the system history holds AuditEvent resources, which are for stewards: ask per type")
        self._no_audit(p, pairs)
        if seg and seg[-1] == "$everything" and not any(k == "_type" for k, _ in pairs):
            return [("_type", ",".join(sorted(definitions.resource_types() - {AUDIT})))]
        return []

    def _own(self, p: Principal, pid: str, operation: str) -> None:
        """``Patient/[id]/$summary`` and a patient's ``$everything``: a patient's token reaches its
        own patient's only (another patient's is 404, as for a missing one) and needs an
        unrestricted ``patient/*`` read scope, for the answer holds every type of the compartment
        and what it references (practitioners, organizations, medications...: read with the
        patient's records, not by themselves); a system token needs what ``$everything`` needs."""
        if p.patient is None:
            self._wide(p, operation)
        elif pid != p.patient:
            raise hidden("Patient", pid)
        elif not p.scopes.wildcard("patient", "r"):
            raise forbidden(f"{operation} needs an unrestricted patient/*.r (or .rs, .read) scope")

    def _write(self, p: Principal, rtype: str, perm: str, conditional: bool) -> None:
        if rtype == AUDIT:
            raise FhirError(405, error("not-supported", "AuditEvent resources are written by the server only; "
                                       "stewards read and search them", AUDIT))
        if self._need(p, rtype, perm) is not None:
            raise forbidden(f"query-restricted {_WORDS[perm]} scopes are not enforced on writes in this version")
        if conditional and self._need(p, rtype, "s") is not None:
            raise forbidden(f"a conditional {_WORDS[perm]} needs an unrestricted search scope on {rtype}")
        if p.patient is not None:
            raise forbidden("writes with a patient's token are not available in this version of the server")

    async def _validate(self, hub: Any, req: Request, p: Principal, rtype: str, rid: str) -> None:
        """Instance ``$validate`` writes nothing, but its checks read: the instance (``mode`` update,
        delete), what the resource sent refers to (``mode`` create, update), what refers to the
        instance (``mode`` delete) and the Patient of a Condition (ICD-10 rules, always). So a
        system token needs an unrestricted ``system/*`` read scope (AuditEvents: a steward's). A
        patient's token needs read access to the instance, as a read of it (outside the
        compartment: 404), gives no ``mode`` (the others look beyond the compartment) and may name
        no other patient as a Condition's subject (403)."""
        from fhir_hub.rest.validate import icd_patients, requested

        self._need(p, rtype, "r")
        if p.patient is None:
            if not p.scopes.wildcard("system", "r"):
                raise forbidden("instance $validate reads other resources than the instance: it needs an "
                                "unrestricted system/*.r (or .rs, .read) scope")
            return
        person = await self._person(hub, p)
        admit = self._admit(hub, req, p, rtype, rid, person)
        if admit is not None and not admit(await hub.store.read(rtype, rid)):
            raise hidden(rtype, rid)
        resource, mode = requested(req, rtype)
        if mode is not None:
            raise forbidden(f"$validate with mode {mode!r} looks up resources outside the patient's compartment: "
                            "not available with a patient's token (leave mode out)", "mode")
        if isinstance(resource, dict) and any(pid not in person for pid in icd_patients(resource)):
            raise forbidden("$validate would read another patient's record (a Condition's subject): a patient's "
                            "token validates its own patient's resources only", "subject")

    async def _read(self, hub: Any, req: Request, p: Principal, rtype: str, rid: str) -> None:
        """Check a read of ``rtype/rid`` now, on its current version (history, vread, bundle entries)."""
        admit = self._admit(hub, req, p, rtype, rid, await self._person(hub, p))
        if admit is not None and not admit(await hub.store.read(rtype, rid)):
            raise hidden(rtype, rid)

    def _admit(self, hub: Any, req: Request, p: Principal, rtype: str, rid: str,
               person: tuple[str, ...]) -> Admit | None:
        """The guard a read of ``rtype/rid`` must pass on the current version (``None``: none needed);
        403 for a type outside the scopes or the patient compartment, 404 for another patient.

        Patient tokens are held to the compartment as the compartment search defines it
        (``rest/search.py``): the patient's own Patient resource, and resources whose membership
        parameters reference it (``auth/compartment.py``, from the stored bytes); ``person`` is
        :meth:`_person` (with reconciliation on, a golden record's sources count as the patient).
        """
        restrictions = self._need(p, rtype, "r")
        patient = p.patient
        if patient is None:
            if restrictions is None:
                return None
        elif rtype == "Patient":
            if rid not in person:
                raise hidden(rtype, rid)
        elif not definitions.compartments().get("Patient", {}).get(rtype):
            raise forbidden(f"{rtype} resources are not in a patient's compartment: a patient's token cannot "
                            "read them")
        key = (rtype, req.base_url, person)
        admit: Admit | None = p.memo.get(key)
        if admit is None:
            criteria = None
            if restrictions is not None:
                criteria = [c for r in restrictions if (c := self._compile(req, rtype, r)) is not None]
            admit = _Admit(rtype, person if patient is not None else (), criteria, hub.store.indexer)
            if len(p.memo) < _MEMO_MAX:
                p.memo[key] = admit
        return admit

    @staticmethod
    async def _person(hub: Any, p: Principal) -> tuple[str, ...]:
        """The Patient ids a patient's token reaches: its patient, and with reconciliation on, when
        that is a golden record, the sources it links and the golden records merged into it, read
        now (an unlink takes effect at the next request), as the compartment search reads them."""
        if p.patient is None:
            return ()
        if not hub.settings.mpi:
            return (p.patient,)
        from fhir_hub.mpi import expand  # only with FHIR_HUB_MPI=on

        return tuple(await expand.linked(hub.store, p.patient))

    @staticmethod
    def _compile(req: Request, rtype: str, restriction: tuple[tuple[str, str], ...]) -> list[Criterion] | None:
        """The criteria of a query restriction, or ``None`` when the server cannot evaluate it."""
        try:
            q = parse([rtype], list(restriction), base_url=req.base_url, strict=True)
        except FhirError:
            return None  # a restriction the server cannot evaluate grants nothing
        return list(q.criteria_for(rtype))

    def _search(self, p: Principal, method: str, rtype: str, compartment: tuple[str, str] | None,
                pairs: list[tuple[str, str]]) -> tuple[list[str], list[tuple[str, str]]]:
        reach = _broad(pairs)
        if reach is not None:
            self._wide(p, f"the search parameter {reach}")
        self._no_audit(p, pairs)
        if rtype == "*" and compartment is not None and not _steward(p, "s"):
            raise forbidden(f"{compartment[0]}/{compartment[1]}/* includes AuditEvent resources, which are for "
                            "stewards: search the compartment type by type")
        if p.patient is not None:
            if compartment is not None and compartment != ("Patient", p.patient):
                raise forbidden("a patient's token searches only that patient's compartment")
            members = definitions.compartments().get("Patient", {})
            if rtype == "*":
                if not p.scopes.wildcard("patient", "s"):
                    raise forbidden("searching every type of the compartment needs an unrestricted patient/*.s "
                                    "scope")
                types = []
            else:
                if rtype != "Patient" and not members.get(rtype):
                    raise forbidden(f"{rtype} resources are not in a patient's compartment: a patient's token "
                                    "cannot search them")
                types = [rtype]
        else:
            if compartment is not None and rtype == "*" and not p.scopes.wildcard("system", "s"):
                raise forbidden("searching every type of a compartment needs an unrestricted system/*.s scope")
            types = [] if rtype == "*" else [rtype]
        extra: list[tuple[str, str]] = []
        for t in types:
            restrictions = self._need(p, t, "s")
            if restrictions is not None:
                if len(restrictions) > 1:
                    raise forbidden(f"several query-restricted search scopes on {t} cannot be combined in this "
                                    "version; ask for one")
                extra = list(restrictions[0])
        if p.patient is None:
            return ([rtype] if compartment is None else [compartment[0], compartment[1], rtype]) + \
                (["_search"] if method == "POST" else []), extra
        return ["Patient", p.patient, rtype] + (["_search"] if method == "POST" else []), extra

    # --- bundles ----------------------------------------------------------------------------------

    async def _bundle(self, hub: Any, req: Request, p: Principal) -> Request:
        if p.patient is None and p.scopes.wildcard("system", "cruds") and AUDIT.encode() not in req.body:
            return req  # every entry is allowed (none can touch AuditEvents): no need to read the bundle twice
        bundle = parse_json(req.body, "Bundle")
        entries = bundle.get("entry") if isinstance(bundle, dict) else None
        if not isinstance(entries, list):
            return req  # nothing to authorize; the bundle handler reports what is wrong with it
        changed = False
        for i, entry in enumerate(entries):
            request = entry.get("request") if isinstance(entry, dict) else None
            if not isinstance(request, dict) or not isinstance(request.get("url"), str):
                raise forbidden("a bundle entry without request.method and request.url cannot be authorized",
                                f"Bundle.entry[{i}]")
            method = str(request.get("method", "")).upper()
            path, _, qs = request["url"].partition("?")
            seg = [s for s in path.split("/") if s]
            if "://" in path:
                first = next((k for k, s in enumerate(seg) if definitions.is_resource_type(s) or s[:1] == "$"),
                             len(seg))
                seg = seg[first:]
            pairs = parse_qsl(qs, keep_blank_values=True)
            if method == "POST" and not seg:
                raise forbidden("a bundle inside a bundle cannot be authorized", f"Bundle.entry[{i}]")
            try:
                new_seg, extra = await self._decide(hub, req, p, method, seg, pairs)
            except FhirError as exc:
                # one answer whether the entry's resource is missing or out of reach
                raise forbidden(f"Bundle.entry[{i}]: {exc.issues[0].diagnostics}", f"Bundle.entry[{i}]") from None
            if new_seg != seg and p.patient is not None:
                # the bundle handler searches one type by its own criteria, with no compartment form
                raise forbidden(f"Bundle.entry[{i}]: searches inside a bundle are not available with a patient's "
                                "token in this version (reads by id are)", f"Bundle.entry[{i}]")
            if new_seg != seg or extra:
                request["url"] = "/".join(new_seg) + (f"?{urlencode([*pairs, *extra])}" if pairs or extra else "")
                changed = True
        if not changed:
            return req
        return replace(req, body=orjson.dumps(bundle))


__all__ = ["Enforcer", "Principal", "forbidden", "hidden", "unauthorized"]
