"""An in-memory FHIR R4 server that behaves like the EHR endpoints the CDS service calls.

Integration tests need more than canned responses: real EHRs scope every search to a patient,
page results through opaque ``next`` links, reject missing or stale bearer tokens, and fail in
characteristic ways (outages, slow answers, payloads that are JSON but not FHIR, HTML login
pages served with a 200). This module reproduces those behaviours over FHIR R4 Bundles so the
service's client code is exercised over real HTTP.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Resource = dict[str, Any]
Predicate = Callable[[Resource], bool]

BASE_PATH = "/fhir"
FHIR_JSON = "application/fhir+json"
DEFAULT_COUNT = 50
SEARCHABLE_TYPES = frozenset(
    {
        "Condition",
        "Observation",
        "Procedure",
        "MedicationRequest",
        "MedicationStatement",
        "AllergyIntolerance",
    }
)
MODES = frozenset({"401", "403", "404", "500", "slow", "invalid", "garbage"})

# Resource types whose search parameter of that name exists in R4; elsewhere it is ignored.
_STATUS_TYPES = frozenset({"Observation", "Procedure", "MedicationRequest", "MedicationStatement"})
_CLINICAL_STATUS_TYPES = frozenset({"Condition", "AllergyIntolerance"})
_DATE_TYPES = frozenset({"Observation"})
# Parameters the server consumes itself, so they are not reported as ignored.
_CONTROL_PARAMS = frozenset({"patient", "subject", "_count", "_offset", "_getpages", "_include"})

# Parses as JSON and names a FHIR type, yet a strict R4 parser must reject it.
INVALID_SEARCH_BODY: Resource = {
    "resourceType": "Bundle",
    "type": "searchset",
    "entry": [{"resource": {"resourceType": "Observation", "status": 12}}],
}
# What an SSO proxy in front of an EHR returns when the session is gone: a login page with a
# 200. It is labelled as FHIR JSON so that only parsing, not a content-type check, catches it.
GARBAGE_BODY = "<html><body><h1>Sign in</h1><p>Your session has expired.</p></body></html>"


class FhirError(Exception):
    """An error the server reports to the client as an OperationOutcome."""

    def __init__(self, status: int, code: str, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics


@dataclass
class RecordedRequest:
    """One request as the server saw it, so tests can assert what the client sent."""

    method: str
    path: str
    query: str
    params: list[tuple[str, str]]
    authorization: str | None
    status: int | None = None
    ignored_params: list[str] = field(default_factory=list)


@dataclass
class ErrorMode:
    """A failure injected for requests under one scope; ``remaining=None`` means until cleared."""

    name: str
    seconds: float = 0.0
    remaining: int | None = None


class FhirJSONResponse(JSONResponse):
    """Rendered by orjson: in the benchmark this server shares the CPUs with the service."""

    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def operation_outcome(code: str, diagnostics: str) -> Resource:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }


def load_bundles(directory: str | Path) -> list[Resource]:
    """Reads every ``*.json`` Bundle in a directory; other JSON files (fixtures, notes) are
    skipped so golden patients can sit next to other examples."""
    bundles = []
    for path in sorted(Path(directory).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("resourceType") == "Bundle":
            bundles.append(data)
    return bundles


class FhirState:
    """Everything the app serves and records, shared between the test thread and the server
    thread, hence the lock around the parts both sides mutate."""

    def __init__(
        self,
        bundles: Iterable[Resource] = (),
        token: str | None = None,
        page_size: int = DEFAULT_COUNT,
    ) -> None:
        self._initial_bundles = list(bundles)
        self._initial_token = token
        #: Entries per search page when the client sends no `_count` (servers choose their own).
        self.page_size = page_size
        self.lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self.modes: dict[str, ErrorMode] = {}
        self.reset()

    def reset(self) -> None:
        """Returns to the constructor's data and token, so one test cannot leak into the next."""
        with self.lock:
            self.token = self._initial_token
            self.requests.clear()
            self.modes.clear()
            self.resources: dict[str, dict[str, Resource]] = {}
            self.owner: dict[tuple[str, str], str] = {}
            self.pages: dict[str, tuple[str, list[str]]] = {}
        for bundle in self._initial_bundles:
            self.add_bundle(bundle)

    def add_bundle(self, bundle: Resource) -> str:
        """Indexes a one-patient Bundle and returns the patient id. Ownership comes from bundle
        membership, not from ``subject`` references, so bundles may use any reference style."""
        if bundle.get("resourceType") != "Bundle":
            raise ValueError("not a Bundle")
        resources = [e["resource"] for e in bundle.get("entry", [])]
        patients: list[str] = [r["id"] for r in resources if r["resourceType"] == "Patient"]
        if len(patients) != 1:
            raise ValueError(f"bundle {bundle.get('id')!r} must hold exactly one Patient")
        with self.lock:
            for resource in resources:
                key = (resource["resourceType"], resource["id"])
                if key in self.owner:
                    raise ValueError(f"duplicate resource {key[0]}/{key[1]}")
                self.owner[key] = patients[0]
                self.resources.setdefault(key[0], {})[key[1]] = resource
        return patients[0]

    def set_mode(self, scope: str, mode: ErrorMode) -> None:
        if mode.name not in MODES:
            raise ValueError(f"unknown mode {mode.name!r}; expected one of {sorted(MODES)}")
        with self.lock:
            self.modes[scope.strip("/")] = mode

    def clear_mode(self, scope: str | None = None) -> None:
        with self.lock:
            if scope is None:
                self.modes.clear()
            else:
                self.modes.pop(scope.strip("/"), None)

    def take_mode(self, relative_path: str) -> ErrorMode | None:
        """The most specific mode covering the path (``""`` is global), used up once."""
        with self.lock:
            scopes = [
                s
                for s in self.modes
                if s == "" or relative_path == s or relative_path.startswith(s + "/")
            ]
            if not scopes:
                return None
            scope = max(scopes, key=len)
            mode = self.modes[scope]
            if mode.remaining is not None:
                mode.remaining -= 1
                if mode.remaining <= 0:
                    del self.modes[scope]
            return mode


def _codings(value: Any) -> list[dict[str, Any]]:
    """Codings of a CodeableConcept or list of them; bare strings (AllergyIntolerance.category)
    count as codes without a system."""
    codings: list[dict[str, Any]] = []
    for concept in value if isinstance(value, list) else [value]:
        if isinstance(concept, str):
            codings.append({"code": concept})
        elif isinstance(concept, dict):
            codings.extend(concept.get("coding", []))
    return codings


def _token_matches(token: str, codings: list[dict[str, Any]]) -> bool:
    """FHIR token semantics: ``system|code``, ``|code`` (no system), ``system|`` (any code in
    the system) or bare ``code`` (any system)."""
    if "|" not in token:
        return any(c.get("code") == token for c in codings)
    system, code = token.split("|", 1)
    return any(
        (c.get("system") or "") == system and (not code or c.get("code") == code) for c in codings
    )


def _any_token(value: str, codings_of: Callable[[Resource], Any]) -> Predicate:
    tokens = value.split(",")
    return lambda r: any(_token_matches(t, _codings(codings_of(r))) for t in tokens)


def _date_range(text: str) -> tuple[datetime, datetime]:
    """FHIR dates are ranges at their precision: ``2020-03`` is all of March."""
    try:
        if len(text) == 4:
            return datetime(int(text), 1, 1, tzinfo=UTC), datetime(int(text) + 1, 1, 1, tzinfo=UTC)
        if len(text) == 7:
            year, month = int(text[:4]), int(text[5:])
            start = datetime(year, month, 1, tzinfo=UTC)
            return start, datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        if len(text) == 10:
            start = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
            return start, start + timedelta(days=1)
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise FhirError(400, "invalid", f"invalid date {text!r}") from exc
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment, moment + timedelta(seconds=1)


def _date_predicate(value: str) -> Predicate:
    """Compares ranges as the R4 spec does, so day-precision data and dateTime queries mix."""
    prefix, text = (value[:2], value[2:]) if value[:2].isalpha() else ("eq", value)
    low, high = _date_range(text)
    compare: dict[str, Callable[[datetime, datetime], bool]] = {
        "eq": lambda lo, hi: low <= lo and hi <= high,
        "gt": lambda lo, hi: hi > high,
        "lt": lambda lo, hi: lo < low,
        "ge": lambda lo, hi: hi > low,
        "le": lambda lo, hi: lo < high,
    }
    if prefix not in compare:
        raise FhirError(400, "not-supported", f"unsupported date prefix {prefix!r}")

    def matches(resource: Resource) -> bool:
        effective = resource.get("effectiveDateTime") or resource.get("effectiveInstant")
        effective = effective or (resource.get("effectivePeriod") or {}).get("start")
        return isinstance(effective, str) and compare[prefix](*_date_range(effective))

    return matches


def _predicate(resource_type: str, name: str, value: str) -> Predicate | None:
    """The filter for one search parameter, or None if this resource type has no such one."""
    if name == "code":
        return _any_token(value, lambda r: r.get("code") or r.get("medicationCodeableConcept"))
    if name == "category":
        return _any_token(value, lambda r: r.get("category"))
    if name == "status" and resource_type in _STATUS_TYPES:
        statuses = set(value.split(","))
        return lambda r: r.get("status") in statuses
    if name == "clinical-status" and resource_type in _CLINICAL_STATUS_TYPES:
        return _any_token(value, lambda r: r.get("clinicalStatus"))
    if name == "date" and resource_type in _DATE_TYPES:
        return _date_predicate(value)
    return None


def _patient_id(params: list[tuple[str, str]]) -> str:
    """Accepts ``patient=ID``, ``patient=Patient/ID`` and ``subject=Patient/ID``. Like most EHRs,
    refuses unscoped searches rather than dumping every patient's data."""
    for name, value in params:
        if name in ("patient", "subject"):
            kind, _, ident = value.rpartition("/")
            if kind and not kind.endswith("Patient"):
                raise FhirError(400, "invalid", f"{name} must reference a Patient")
            return ident
    raise FhirError(400, "required", "search requires a patient or subject parameter")


def _int_param(params: list[tuple[str, str]], name: str, default: int) -> int:
    value = dict(params).get(name)
    if value is None:
        return default
    if not value.isdigit():
        raise FhirError(400, "invalid", f"{name} must be a non-negative integer")
    return int(value)


class FhirApp:
    """The request pipeline: record, authenticate, inject failures, then serve."""

    def __init__(self, state: FhirState) -> None:
        self.state = state

    async def handle(self, request: Request) -> Response:
        params = list(request.query_params.multi_items())
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            params=params,
            authorization=request.headers.get("authorization"),
        )
        with self.state.lock:
            self.state.requests.append(record)
        try:
            response = await self._respond(request, params, record)
        except FhirError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            outcome = operation_outcome(exc.code, exc.diagnostics)
            response = FhirJSONResponse(outcome, status_code=exc.status, headers=headers)
        record.status = response.status_code
        return response

    async def _respond(
        self, request: Request, params: list[tuple[str, str]], record: RecordedRequest
    ) -> Response:
        path = request.url.path
        if path != BASE_PATH and not path.startswith(BASE_PATH + "/"):
            raise FhirError(404, "not-found", f"no FHIR endpoint at {path}")
        relative = path[len(BASE_PATH) :].strip("/")
        token = self.state.token
        if token is not None and record.authorization != f"Bearer {token}":
            raise FhirError(401, "login", "missing or invalid bearer token")
        mode = self.state.take_mode(relative)
        if mode is not None:
            failure = await self._apply_mode(mode, relative)
            if failure is not None:
                return failure
        if request.method != "GET":
            raise FhirError(405, "not-supported", "this server is read-only")
        parts = relative.split("/") if relative else []
        if len(parts) == 2:
            return FhirJSONResponse(self._read(*parts))
        if len(parts) == 1:
            base = f"{request.url.scheme}://{request.url.netloc}{BASE_PATH}"
            return FhirJSONResponse(self._search(parts[0], params, base, record))
        raise FhirError(404, "not-found", f"no FHIR endpoint at {path}")

    async def _apply_mode(self, mode: ErrorMode, relative: str) -> Response | None:
        """Returns the injected failure, or None once a ``slow`` delay has passed."""
        if mode.name == "slow":
            await asyncio.sleep(mode.seconds)  # Yields the loop: other requests still proceed.
            return None
        if mode.name == "garbage":
            return Response(GARBAGE_BODY, media_type=FHIR_JSON)
        if mode.name == "invalid":
            parts = relative.split("/")
            if len(parts) == 2:
                return FhirJSONResponse({"resourceType": parts[0], "id": 12})
            return FhirJSONResponse(INVALID_SEARCH_BODY)
        code = {"401": "login", "403": "forbidden", "404": "not-found", "500": "exception"}
        raise FhirError(int(mode.name), code[mode.name], f"injected {mode.name}")

    def _read(self, resource_type: str, resource_id: str) -> Resource:
        with self.state.lock:
            resource = self.state.resources.get(resource_type, {}).get(resource_id)
        if resource is None:
            raise FhirError(404, "not-found", f"{resource_type}/{resource_id} is not known")
        return resource

    def _search(
        self, resource_type: str, params: list[tuple[str, str]], base: str, record: RecordedRequest
    ) -> Resource:
        if resource_type not in SEARCHABLE_TYPES:
            raise FhirError(404, "not-supported", f"search on {resource_type} is not supported")
        count = _int_param(params, "_count", self.state.page_size)
        offset = _int_param(params, "_offset", 0)
        page_token = dict(params).get("_getpages")
        with self.state.lock:
            if page_token is not None:
                # A continuation serves the snapshot taken by the first page, whatever else the
                # client appends, as HAPI and Epic do.
                page = self.state.pages.get(page_token)
                if page is None or page[0] != resource_type:
                    raise FhirError(410, "not-found", "search results expired or unknown")
                ids = page[1]
            else:
                ids = self._matching_ids(resource_type, params, record)
                page_token = uuid.uuid4().hex
                self.state.pages[page_token] = (resource_type, ids)
            resources = [self.state.resources[resource_type][i] for i in ids]
            window = resources[offset : offset + count]
            included = self._included(resource_type, params, window)
        links = [{"relation": "self", "url": f"{base}/{resource_type}?{record.query}"}]
        if count and offset + count < len(resources):
            next_query = f"_getpages={page_token}&_offset={offset + count}&_count={count}"
            links.append({"relation": "next", "url": f"{base}/{resource_type}?{next_query}"})
        return {
            "resourceType": "Bundle",
            "id": uuid.uuid4().hex,
            "type": "searchset",
            "total": len(resources),
            "link": links,
            "entry": [
                {
                    "fullUrl": f"{base}/{resource_type}/{r['id']}",
                    "resource": r,
                    "search": {"mode": "match"},
                }
                for r in window
            ]
            + [
                {
                    "fullUrl": f"{base}/Medication/{m['id']}",
                    "resource": m,
                    "search": {"mode": "include"},
                }
                for m in included
            ],
        }

    def _included(
        self, resource_type: str, params: list[tuple[str, str]], window: list[Resource]
    ) -> list[Resource]:
        """`_include=<Type>:medication`: the Medications the page's entries reference."""
        if (f"{resource_type}:medication") not in {v for k, v in params if k == "_include"}:
            return []
        medications = self.state.resources.get("Medication", {})
        out: list[Resource] = []
        for r in window:
            ref = (r.get("medicationReference") or {}).get("reference", "")
            found = medications.get(ref.removeprefix("Medication/")) if ref else None
            if ref.startswith("Medication/") and found is not None and found not in out:
                out.append(found)
        return out

    def _matching_ids(
        self, resource_type: str, params: list[tuple[str, str]], record: RecordedRequest
    ) -> list[str]:
        """Repeated parameters AND together; comma-separated values within one OR together."""
        patient = _patient_id(params)
        predicates = []
        for name, value in params:
            if name in _CONTROL_PARAMS:
                continue
            predicate = _predicate(resource_type, name, value)
            if predicate is None:
                record.ignored_params.append(name)
            else:
                predicates.append(predicate)
        return [
            resource_id
            for resource_id, resource in self.state.resources.get(resource_type, {}).items()
            if self.state.owner[(resource_type, resource_id)] == patient
            and all(p(resource) for p in predicates)
        ]


def create_app(state: FhirState) -> Starlette:
    """Routes every method and path through one handler so even stray requests are recorded
    and answered with an OperationOutcome, as a FHIR server would."""
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", FhirApp(state).handle, methods=methods)])
