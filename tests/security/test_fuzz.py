"""Property-based fuzzing of every operation in the server's own OpenAPI document (schemathesis over the
ASGI app, real SQLite, no workers), signed in as an admin, as a plain user and as nobody, the token sent
as a query or form parameter or an Authorization / X-Esri-Authorization header.

Every answer must pass schemathesis' ``not_a_server_error`` and ``problems``: no 5xx, no unexpected-error
envelope (the code 500 the server answers, with HTTP 200, for an exception it did not expect) and nothing
logged as one, no Python internals in the body, strict JSON for JSON answers, and every error body in the
documented envelope. Path parameters and the fields that name rows are drawn mostly from seeded rows (a
notebook item, an upload in parts, jobs, a task and its run, a webhook receiver, a web tool and its job),
and create/update operations often start from a valid form with a few fields changed, so requests reach
real data and the code past the first check.

``NBJOBS_FUZZ_EXAMPLES`` sets the examples per operation and auth mode (default 4: about a minute of CPU
for the whole file; ``make fuzz`` runs long), ``NBJOBS_FUZZ_SEED`` the seed (``random`` for new
requests each run), ``NBJOBS_FUZZ_REPORT`` a JSON file for the totals.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi

from nbjobs.web.app import create_app
from nbjobs.web.errors import UNEXPECTED
from tests.conftest import notebook_bytes
from tests.security.fuzz_support import (
    CTX,
    JSON_FIELDS,
    Api,
    JsonUpstream,
    Seeds,
    Totals,
    UnexpectedErrors,
    build_nbjobs,
    file_values,
    json_values,
    prepare_schema,
    problems,
    signed,
)

EXAMPLES = int(os.environ.get("NBJOBS_FUZZ_EXAMPLES", "4"))
# Without a token every operation should stop at the same check: half as many examples prove it.
EXAMPLES_BY_MODE = {"admin": EXAMPLES, "alice": EXAMPLES, "anonymous": max(1, EXAMPLES // 2)}
pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(max(240, 60 * EXAMPLES))]
REPORT = os.environ.get("NBJOBS_FUZZ_REPORT", "")
# Unset: the same requests every run (CI); "random": new ones each run; a number: that run again.
SEED = os.environ.get("NBJOBS_FUZZ_SEED", "20260")
BASE = "https://testserver"
# Operations that remove or reset what the seeds made run last, so the others meet the seeded rows.
DESTRUCTIVE = ("delete", "deleteAll", "unregister", "restore", "disable", "cancel", "commit", "closeNotebook",
               "close", "terminate", "terminateContainer")  # fmt: skip
TRANSPORTS = ("query", "form", "authorization", "x-esri-authorization")
SINKS = ("/rest/events/webhooks/{receiver_id}", "/admin/notebooks/webhookReceivers/{receiver_id}")

TOTALS = Totals(examples_per_operation=EXAMPLES_BY_MODE)


class Fuzzer:
    """The seeded server, the schema built from its own OpenAPI document, and one session into it."""

    def __init__(self, data_dir: Path) -> None:
        self.nb = build_nbjobs(data_dir)
        self.app = create_app(self.nb.web)
        self.session = asgi.get_client(self.app).__enter__()
        self.session.base_url = BASE
        doc = self.session.get(CTX + "/openapi.json").json()
        self.schema = schemathesis.openapi.from_dict(prepare_schema(doc))
        self.schema.app = self.app
        self.tokens = {
            name: self.nb.tokens.issue(self.nb.users.get(name)).token for name in ("admin", "alice", "bob")
        }
        admin, alice = (Api(self.session, name, self.tokens[name]) for name in ("admin", "alice"))
        self.upstream = JsonUpstream().__enter__()  # what alice's seeded notebook container answers with
        self.seeds = Seeds(self.nb, admin, alice, self.upstream)
        self.seeds.refresh()
        self.notebook = notebook_bytes("parameters.ipynb")
        self.logged = UnexpectedErrors()
        logging.getLogger("nbjobs.web").addHandler(self.logged)

    def operations(self) -> list[Any]:
        found = [result.ok() for result in self.schema.get_all_operations()]
        return sorted(found, key=lambda op: op.path.rsplit("/", 1)[-1] in DESTRUCTIVE)

    def close(self) -> None:
        logging.getLogger("nbjobs.web").removeHandler(self.logged)
        self.session.__exit__(None, None, None)
        asgi.shutdown_lifespans()
        self.upstream.__exit__(None, None, None)
        self.nb.store.close()


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Fuzzer]:
    started = time.monotonic()
    fuzz = Fuzzer(tmp_path_factory.mktemp("fuzz"))
    yield fuzz
    fuzz.close()
    TOTALS.seconds = time.monotonic() - started
    totals = TOTALS.as_dict()
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    line = (
        f"API fuzz: {totals['operations_fuzzed']} operations, {totals['examples_sent']} examples sent "
        f"({EXAMPLES_BY_MODE}/operation; by mode {totals['examples_by_auth_mode']}), "
        f"answers {totals['answers']}; {totals['failures']} failures, {totals['seconds']} s"
    )
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        if reporter is not None:
            reporter.write_line("")
            reporter.write_line(line)
        else:  # pragma: no cover - pytest without its terminal reporter
            print(line)
    if REPORT:
        Path(REPORT).parent.mkdir(parents=True, exist_ok=True)
        Path(REPORT).write_text(json.dumps(totals, indent=2) + "\n")


_STRATEGIES: dict[str, st.SearchStrategy] = {}


def _strategy(operation: Any) -> st.SearchStrategy:
    """Valid and invalid requests (the negative mode is skipped where schemathesis cannot negate). Built
    once per operation: schemathesis mixes in the app's own string constants, which costs to set up."""
    if operation.label in _STRATEGIES:
        return _STRATEGIES[operation.label]
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    with contextlib.suppress(Exception):  # an operation with nothing to make invalid
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    return _STRATEGIES.setdefault(operation.label, st.one_of(strategies))


def _fields(case: Any) -> dict | None:
    """The query (GET) or form body (POST) of a case, when it is a dict the test may edit."""
    container = case.body if case.method.upper() == "POST" else case.query
    return container if isinstance(container, dict) else None


def _aims(fuzz: Fuzzer, operation: Any) -> st.SearchStrategy[dict[str, Any]]:
    """Values that point parts of a generated request at seeded rows, and JSON fields and uploads with
    real shapes; None leaves the generated value. For operations with a valid ``baseline`` form, half the
    examples start from it and change a few fields. Built once per operation, drawn once per example."""
    seeds = fuzz.seeds
    keep = st.none()
    path = {}
    for name in _names(operation, "path"):
        if known := seeds.path_values(name):
            path[name] = st.one_of(st.sampled_from(known), st.sampled_from(known), keep)  # mostly real rows
    fields: dict[str, st.SearchStrategy] = {}
    for name in _names(operation, "query") + _names(operation, "body"):
        if name in JSON_FIELDS:
            fields[name] = json_values()
        elif name == "file":
            fields[name] = file_values(fuzz.notebook)
        elif known := seeds.field_values(name):
            fields[name] = st.sampled_from(known)
    # Mostly JSON, so the envelope checks read most answers (an absent or unknown f means html).
    fmt = st.sampled_from(["json", "json", "json", "json", "pjson", "html", None])  # first: simplest
    plain = {name: value | keep for name, value in fields.items()}
    aims = st.fixed_dictionaries(
        {"path": st.fixed_dictionaries(path), "fields": st.fixed_dictionaries(plain), "f": fmt,
         "baseline": st.none()}
    )  # fmt: skip
    baseline = seeds.baseline(operation.path)
    if baseline is None or not _names(operation, "query") + _names(operation, "body"):
        return aims
    changes = {name: keep | value for name, value in fields.items()}  # mostly the baseline's values
    based = st.fixed_dictionaries(
        {"path": st.fixed_dictionaries(path), "fields": st.fixed_dictionaries(changes), "f": fmt,
         "baseline": st.just(baseline)}
    )  # fmt: skip
    return based | aims


def _aim(case: Any, aim: dict[str, Any]) -> dict[str, str]:
    """Apply ``aim`` to the case; returns query parameters to add (f, when the case has no form body)."""
    for name, value in aim["path"].items():
        if value is not None and case.path_parameters and name in case.path_parameters:
            case.path_parameters[name] = value
    fields = _fields(case)
    if aim["baseline"] is not None:
        if fields is None:
            if case.method.upper() == "GET":
                case.query = fields = {}
            else:
                case.body = fields = {}
        fields.update(aim["baseline"])
    if fields is None and case.method.upper() == "GET":
        case.query = fields = {}
    if fields is None:  # a POST without a form body (none generated, or a negative one): f in the query
        return {} if aim["f"] is None else {"f": aim["f"]}
    for name, value in aim["fields"].items():
        if value is not None:
            fields[name] = value
    if aim["f"] is not None:
        fields["f"] = aim["f"]
    return {}


def _names(operation: Any, where: str) -> list[str]:
    """The documented parameter names of ``operation`` in the path, the query or the form body."""
    raw = operation.definition.raw
    if where != "body":
        return [p["name"] for p in raw.get("parameters", []) if p.get("in") == where]
    names: list[str] = []
    for media in raw.get("requestBody", {}).get("content", {}).values():
        names.extend(media.get("schema", {}).get("properties", {}))
    return names


def _sign_in(fuzz: Fuzzer, case: Any, mode: str, transport: str) -> tuple[dict, dict]:
    """Headers and extra query parameters that carry the mode's token the way ``transport`` says."""
    token = fuzz.tokens.get(mode, "")
    if not token:
        return {}, {}
    if transport == "authorization":
        return {"Authorization": f"Bearer {token}"}, {}
    if transport == "x-esri-authorization":
        return {"X-Esri-Authorization": f"Bearer {token}"}, {}
    fields = _fields(case)
    if transport == "form" and case.method.upper() == "POST" and fields is not None:
        fields["token"] = token
        return {}, {}
    return {}, {"token": token}


def _content_type(headers: dict[str, list[str]]) -> str:
    found = (values[0] for name, values in headers.items() if name.lower() == "content-type" and values)
    return next(found, "")


def _sent(case: Any, headers: dict, params: dict) -> str:
    """The request as text, so a value the server echoes back is not taken for leaked internals."""
    return repr((case.path_parameters, case.query, case.body, case.headers, headers, params))


def _seeded(test: Any) -> Any:
    return test if SEED == "random" else seed(int(SEED))(test)


def _fuzz_operation(fuzz: Fuzzer, operation: Any, mode: str) -> None:
    label = f"{operation.method.upper()} {operation.path}"

    @settings(
        max_examples=EXAMPLES_BY_MODE[mode],
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @_seeded
    @given(
        case=_strategy(operation),
        aim=_aims(fuzz, operation),
        transport=st.sampled_from(TRANSPORTS),
        event=_events(operation),
    )
    def run(case: Any, aim: dict[str, Any], transport: str, event: bytes | None) -> None:
        extra = _aim(case, aim)
        headers, params = _sign_in(fuzz, case, mode, transport)
        params = {**extra, **params}
        response = case.call(
            base_url=BASE, session=fuzz.session, headers=headers, params=params, allow_redirects=False
        )
        TOTALS.examples += 1
        TOTALS.by_mode[mode] = TOTALS.by_mode.get(mode, 0) + 1
        case.validate_response(response, checks=[not_a_server_error])
        content_type = _content_type(response.headers)
        TOTALS.count(content_type, response.content)
        found = (
            problems(
                operation.path,
                response.status_code,
                content_type,
                response.content,
                _sent(case, headers, params),
            )
            + fuzz.logged.take()
        )
        assert not found, (
            f"{found}; answer {response.status_code} {response.content[:400]!r}\n"
            f"reproduce: {case.as_curl_command(headers={**headers, **case.headers})} (+ query {params})"
        )
        if event is not None:
            _signed_event(fuzz, operation, event)

    started = time.monotonic()
    fuzz.logged.take()  # what the seeding logged is not this operation's
    try:
        run()
    except Exception as exc:
        notes = "\n".join(getattr(exc, "__notes__", []))
        TOTALS.failures.append(f"{label} as {mode}: {exc}\n{notes}".strip())
    if os.environ.get("NBJOBS_FUZZ_TIMES"):
        print(f"{time.monotonic() - started:7.3f}s {label} as {mode}")


def _events(operation: Any) -> st.SearchStrategy[bytes | None]:
    """For the webhook sinks (raw bodies the schema does not describe): random JSON events to sign."""
    if operation.path.removeprefix(CTX) not in SINKS or operation.method.upper() != "POST":
        return st.none()
    return json_values().map(str.encode)


def _signed_event(fuzz: Fuzzer, operation: Any, payload: bytes) -> None:
    """A correctly signed event to the seeded receiver must start a job or be refused in the envelope."""
    path = operation.path.replace("{receiver_id}", fuzz.seeds.receiver)
    answer = fuzz.session.post(BASE + path, data=payload, headers=signed(payload))
    TOTALS.examples += 1
    found = (
        problems(
            operation.path, answer.status_code, answer.headers.get("content-type", ""), answer.content, ""
        )
        + fuzz.logged.take()
    )
    assert answer.status_code < 500 and not found, f"signed event to {path}: {found} {answer.content[:300]!r}"


@pytest.mark.parametrize("mode", ["admin", "alice", "anonymous"])
def test_every_operation_answers_in_the_envelope(fuzzer: Fuzzer, mode: str) -> None:
    """No operation answers a 5xx, a traceback, unparseable JSON or an error out of the documented shape,
    whatever the generated request, signed in as ``mode``."""
    before = len(TOTALS.failures)
    operations = fuzzer.operations()
    for operation in operations:
        fuzzer.seeds.refresh()
        _fuzz_operation(fuzzer, operation, mode)
        TOTALS.operations.add(f"{operation.method.upper()} {operation.path}")
    assert len(operations) >= 130  # the document lists every route: a lost router would shrink it
    failures = TOTALS.failures[before:]
    assert not failures, f"{len(failures)} operations failed:\n\n" + "\n\n".join(failures)


@pytest.mark.parametrize("mode", ["admin", "alice", "anonymous"])
def test_snapshot_operations_answer_in_the_envelope(fuzzer: Fuzzer, mode: str) -> None:
    """The snapshots API alone (``-k snapshot``), aimed at a seeded snapshot, as the whole run fuzzes it."""
    before = len(TOTALS.failures)
    operations = [op for op in fuzzer.operations() if "/snapshots" in op.path]
    for operation in operations:
        fuzzer.seeds.refresh()
        _fuzz_operation(fuzzer, operation, mode)
    assert len(operations) >= 10
    failures = TOTALS.failures[before:]
    assert not failures, f"{len(failures)} operations failed:\n\n" + "\n\n".join(failures)


@pytest.mark.parametrize("mode", ["admin", "alice", "anonymous"])
def test_interactive_operations_answer_in_the_envelope(fuzzer: Fuzzer, mode: str) -> None:
    """The interactive notebooks' API alone (``-k interactive``): openNotebook, the open notebooks, the
    containers and deployments, aimed at alice's seeded container and notebook, as the whole run fuzzes
    them (the lab proxy is no OpenAPI operation: test_authz.py covers it)."""
    before = len(TOTALS.failures)
    operations = [op for op in fuzzer.operations() if "interactive" in op.definition.raw.get("tags", ())]
    for operation in operations:
        fuzzer.seeds.refresh()
        _fuzz_operation(fuzzer, operation, mode)
    assert len(operations) >= 41, [f"{op.method} {op.path}" for op in operations]
    failures = TOTALS.failures[before:]
    assert not failures, f"{len(failures)} operations failed:\n\n" + "\n\n".join(failures)


ADMIN_PATH = CTX + "/admin/notebooks/jobs/{job_id}"
PORTAL_PATH = CTX + "/sharing/rest/content/items/{item_id}"
GOOD_ADMIN = {"status": "error", "messages": ["Job 'x' does not exist or is inaccessible."], "code": 404}
GOOD_PORTAL = {"error": {"code": 400, "message": "Item does not exist or is inaccessible.", "details": []}}


@pytest.mark.parametrize(
    ("path", "status", "content_type", "body", "complaint"),
    [
        (ADMIN_PATH, 500, "application/json", GOOD_ADMIN, "HTTP 500"),
        (PORTAL_PATH, 200, "text/html", "Traceback (most recent call last):\n  ...", "Python internals"),
        (PORTAL_PATH, 200, "application/json", {"error": "KeyError('x')"}, "Python internals"),
        (PORTAL_PATH, 200, "application/json", "{not json", "not JSON"),
        (ADMIN_PATH, 200, "application/json", '{"inputs": {"x": NaN}}', "not JSON"),
        (ADMIN_PATH, 200, "application/json", GOOD_PORTAL, "portal error envelope on an admin path"),
        (PORTAL_PATH, 200, "application/json", GOOD_ADMIN, "admin error envelope on a portal"),
        (ADMIN_PATH, 200, "application/json", {**GOOD_ADMIN, "code": "404"}, "out of shape"),
        (ADMIN_PATH, 200, "application/json", {**GOOD_ADMIN, "messages": []}, "out of shape"),
        (PORTAL_PATH, 200, "application/json", {"error": {"code": 400, "message": "x"}}, "out of shape"),
        (PORTAL_PATH, 422, "application/json", {"detail": [{"loc": ["query"]}]}, "no error envelope"),
        (PORTAL_PATH, 404, "text/plain", "Not Found", "HTTP 404 with a 'text/plain' body"),
        (
            PORTAL_PATH,
            200,
            "application/json",
            {"error": {"code": 500, "message": UNEXPECTED, "details": []}},
            "failed unexpectedly",
        ),
    ],
)
def test_the_oracle_flags_each_kind_of_bad_answer(path, status, content_type, body, complaint):
    """The checks the fuzzer relies on catch what they promise (else a green fuzz run would prove nothing)."""
    raw = (body if isinstance(body, str) else json.dumps(body)).encode()
    found = problems(path, status, content_type, raw, sent="")
    assert any(complaint in f for f in found), found


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (ADMIN_PATH, GOOD_ADMIN),
        (PORTAL_PATH, GOOD_PORTAL),
        (ADMIN_PATH, {"jobId": "x", "status": "COMPLETED", "results": {"messages": ["ok"]}}),
        (PORTAL_PATH, {"id": "x", "title": "ValueError in the title", "owner": "alice"}),
    ],
)
def test_the_oracle_passes_good_answers(path, body):
    """Documented envelopes and ordinary resources pass; a value the request sent may be echoed back."""
    raw = json.dumps(body).encode()
    assert problems(path, 200, "application/json", raw, sent="{'title': 'ValueError in the title'}") == []
