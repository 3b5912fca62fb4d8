"""Web tools: publish a notebook as a GP service, and run its task as ``executeNotebookAsWebTool`` jobs.

Publishing snapshots the notebook; calls run the snapshot, so later edits to the item change nothing
until ``edit``. A tool whose notebook item is gone is deleted the next time anyone looks at it.
"""

from __future__ import annotations

import builtins
import re
import uuid
from collections.abc import Mapping
from typing import Any

from nbjobs.clock import Clock
from nbjobs.errors import (
    GPTaskNotFound,
    InvalidRequest,
    JobNotFound,
    PermissionDenied,
    RuntimeDisabled,
    ServiceNotFound,
    WebToolExists,
)
from nbjobs.models.accounts import Principal, User
from nbjobs.models.jobs import NO_RETRIES, Job, JobInputs, JobType, RetryPolicy
from nbjobs.models.notifications import Rule
from nbjobs.models.parameters import parse_parameters
from nbjobs.models.portal_stores import WebToolStore
from nbjobs.models.retries import parse_retry_policy
from nbjobs.models.runtimes import DEFAULT_RUNTIME, Runtime
from nbjobs.models.webtools import ACCESS, PRIVATE, WebTool, WebToolCall
from nbjobs.service.authz import (
    CREATE_NOTEBOOKS,
    PUBLISH_WEB_TOOLS,
    RUN_WEB_TOOL,
    may_see,
    owner_scope,
    require_privilege,
)
from nbjobs.service.content.items import ItemService, new_item_id
from nbjobs.service.jobs.service import JobService
from nbjobs.service.notifications.service import NotificationService
from nbjobs.service.runtimes.registry import RuntimeService
from nbjobs.service.webtools.outcome import Outcome, outcome
from nbjobs.service.webtools.params import Analysis, ParamType, ToolParam, ToolParams, analyze
from nbjobs.service.webtools.values import InvalidValue, convert_input, typed_output

EMPTY_ITEM_ID = "An empty Notebook ItemID is not allowed for this operation."
MAX_PAGE = 100
# Request fields that are not tool inputs: the format, the token, and GP environment settings.
_RESERVED = frozenset(
    {
        "f",
        "token",
        "context",
        "returnZ",
        "returnM",
        "returnTrueCurves",
        "returnFeatureCollection",
        "returnColumnName",
        "outSR",
        "processSR",
    }
)
_TASK_CHARS = re.compile(r"[^A-Za-z0-9_]+")


class WebToolService:
    """Every web tool operation; the admin side for publishers, the GP side for callers."""

    def __init__(
        self,
        store: WebToolStore,
        items: ItemService,
        jobs: JobService,
        clock: Clock,
        runtimes: RuntimeService | None = None,
        notifications: NotificationService | None = None,
    ) -> None:
        self.notifications = notifications  # None: tools keep no notification rules (tests of other parts)
        self.store = store
        self.items = items
        self.jobs = jobs
        self.clock = clock
        self.runtimes = runtimes  # None: only the built-in default runtime (tests of other parts)

    # -- publishing (admin API) ------------------------------------------------------------------------

    def analyze(self, user: User, item_id: str) -> Analysis:
        """analyzeNotebook: the item's declarations checked against its code."""
        require_privilege(user, CREATE_NOTEBOOKS)
        if not item_id:
            return Analysis(errors=[EMPTY_ITEM_ID])
        _, data = self.items.data(user.principal(), item_id)
        return analyze(data)

    def publish(self, user: User, properties: Mapping[str, Any]) -> WebTool:
        """createService: a tool for a notebook the caller owns, with a snapshot of it."""
        require_privilege(user, CREATE_NOTEBOOKS)
        require_privilege(user, PUBLISH_WEB_TOOLS)
        spec = _ServiceSpec.parse(properties, creating=True)
        rules = self._rules(spec)
        if not spec.notebook_id:
            raise InvalidRequest("serviceProperties.jsonProperties.notebookId is required.")
        item, data = self.items.data(user.principal(), spec.notebook_id)
        if item.owner != user.username:
            raise PermissionDenied("The notebook must belong to the user publishing the service.")
        existing = self.store.by_notebook(item.item_id)
        if existing is not None and self._alive(existing):
            raise WebToolExists(
                f"A web tool has already been published from notebook {item.item_id}: "
                f"{existing.service_name}.GPServer. Edit it to publish the notebook again."
            )
        params = _checked(data)
        now = self.clock()
        tool = WebTool(
            service_name=new_item_id(),
            owner=user.username,
            notebook_id=item.item_id,
            title=spec.title or item.title,
            task_name=spec.task_name or task_name_of(item.title),
            created=now,
            modified=now,
            description=spec.description or "",
            access=spec.access or PRIVATE,
            params=params.to_json(),
            runtime_id=self._runtime_for(user, data),
            snapshot_id=_snapshot_id(),
            retry=spec.retry or NO_RETRIES,
        )
        if not self.store.add(tool, data):
            raise WebToolExists(f"A web tool has already been published from notebook {item.item_id}.")
        self._keep_rules(tool.service_name, rules or ())
        return tool

    def get(self, user: User, service_name: str) -> WebTool:
        """The tool as its owner or an administrator manages it; others' answer as unknown ones."""
        tool = self.store.get(_bare(service_name))
        if tool is None or not may_see(user.principal(), tool.owner) or not self._alive(tool):
            raise ServiceNotFound(_bare(service_name))
        return tool

    def list(self, user: User, *, start: int = 1, num: int = 10) -> tuple[list[WebTool], int]:
        """The caller's tools (an administrator's: all), paged from ``start`` (1-based), at most 100."""
        require_privilege(user, CREATE_NOTEBOOKS)
        owner = owner_scope(user.principal())
        for tool in self.store.list(owner, limit=1_000_000):
            self._alive(tool)
        num = max(1, min(num, MAX_PAGE))
        return self.store.list(owner, limit=num, offset=max(start, 1) - 1), self.store.count(owner)

    def edit(self, user: User, service_name: str, properties: Mapping[str, Any] | None) -> WebTool:
        """Re-snapshot the notebook (and change title, description, task name or access when given)."""
        require_privilege(user, PUBLISH_WEB_TOOLS)
        tool = self.get(user, service_name)
        spec = _ServiceSpec.parse(properties or {}, creating=False)
        rules = self._rules(spec)
        if spec.notebook_id and spec.notebook_id != tool.notebook_id:
            raise InvalidRequest("A web tool cannot be moved to another notebook; publish that one instead.")
        _, data = self.items.data(Principal(tool.owner), tool.notebook_id)
        params = _checked(data)
        edited = WebTool(
            service_name=tool.service_name,
            owner=tool.owner,
            notebook_id=tool.notebook_id,
            title=spec.title or tool.title,
            task_name=spec.task_name or tool.task_name,
            created=tool.created,
            modified=self.clock(),
            description=tool.description if spec.description is None else spec.description,
            access=spec.access or tool.access,
            params=params.to_json(),
            runtime_id=tool.runtime_id,
            snapshot_id=_snapshot_id(),
            retry=tool.retry if spec.retry is None else spec.retry,
        )
        self.store.save(edited, data)
        if rules is not None:
            self._keep_rules(edited.service_name, rules)
        return edited

    def delete(self, user: User, service_name: str) -> None:
        tool = self.get(user, service_name)
        self.store.delete(tool.service_name)
        self._keep_rules(tool.service_name, ())

    def notification_rules(self, tool: WebTool) -> tuple[Rule, ...]:
        """The rules each call's job gets (of a tool the caller was allowed to read)."""
        return self.notifications.scope_rules(f"webtool:{tool.service_name}") if self.notifications else ()

    def _rules(self, spec: _ServiceSpec) -> tuple[Rule, ...] | None:
        if spec.notifications is None or self.notifications is None:
            return None
        return self.notifications.parse(spec.notifications, field="jsonProperties.notifications")

    def _keep_rules(self, service_name: str, rules: tuple[Rule, ...]) -> None:
        if self.notifications is not None:
            self.notifications.set_scope_rules(f"webtool:{service_name}", rules)

    # -- calling (GP REST) -----------------------------------------------------------------------------

    def callable(self, user: User, service_name: str) -> WebTool:
        """The tool if ``user`` may run it: the runWebTool privilege, and the tool is theirs or shared."""
        require_privilege(user, RUN_WEB_TOOL)
        tool = self.store.get(_bare(service_name))
        visible = tool is not None and (may_see(user.principal(), tool.owner) or tool.access != PRIVATE)
        if tool is None or not visible or not self._alive(tool):
            raise ServiceNotFound(_bare(service_name))
        return tool

    def visible(self, user: User) -> builtins.list[WebTool]:
        """Every tool ``user`` may run (the rest/services directory)."""
        require_privilege(user, RUN_WEB_TOOL)
        who = user.principal()
        tools = [
            t for t in self.store.list(None, limit=1_000_000) if may_see(who, t.owner) or t.access != PRIVATE
        ]
        return [t for t in tools if self._alive(t)]

    def params(self, tool: WebTool, task_name: str) -> ToolParams:
        if task_name != tool.task_name:
            raise GPTaskNotFound(tool.service_name, task_name)
        return ToolParams.from_json(tool.params)

    def input_problems(self, tool: WebTool, task_name: str, values: Mapping[str, Any]) -> dict[str, str]:
        """What ``submit`` would refuse in ``values``, by parameter name (a form shows each at its field)."""
        _, _, problems = _converted(self.params(tool, task_name), values, task_name)
        return dict(problems)

    def submit(self, user: User, service_name: str, task_name: str, values: Mapping[str, Any]) -> Job:
        """Check and convert the inputs, then submit the snapshot as an executeNotebookAsWebTool job."""
        tool = self.callable(user, service_name)
        params = self.params(tool, task_name)
        injected, gp_inputs = _inputs(params, values, task_name)
        snapshot = self.store.snapshot(tool.service_name)
        if snapshot is None:
            raise ServiceNotFound(tool.service_name)
        inputs = JobInputs(
            item_id=tool.notebook_id,
            update_portal_item=False,
            notebook_parameters=parse_parameters(injected),
            output_names=tuple(p.name for p in params.outputs),
        )
        job = self.jobs.submit(
            user.principal(),
            snapshot,
            inputs=inputs,
            job_type=JobType.EXECUTE_NOTEBOOK_AS_WEB_TOOL,
            runtime=self._runtime_of(tool),
            retry=tool.retry,
        )
        self.store.add_call(WebToolCall(job.job_id, tool.service_name, task_name, gp_inputs, self.clock()))
        if self.notifications is not None:
            self.notifications.attach(job, self.notification_rules(tool))
        return job

    def call(
        self, user: User, service_name: str, task_name: str, job_id: str
    ) -> tuple[WebTool, ToolParams, Job, WebToolCall]:
        """A job of this task that ``user`` may see; anything else answers as an unknown job."""
        tool = self.callable(user, service_name)
        params = self.params(tool, task_name)
        job = self.jobs.get(user.principal(), job_id)
        record = self.store.get_call(job_id)
        if record is None or record.service_name != tool.service_name or record.task_name != task_name:
            raise JobNotFound(job_id)
        return tool, params, job, record

    def outcome(self, job: Job, params: ToolParams, task_name: str) -> Outcome:
        return outcome(job, params, task_name)

    def peek(self, job_id: str) -> Job | None:
        """The job as stored (for a caller that has just submitted it and waits on its end)."""
        return self.jobs.store.get(job_id)

    def cancel(self, user: User, service_name: str, task_name: str, job_id: str) -> Job:
        self.call(user, service_name, task_name, job_id)
        return self.jobs.cancel(user.principal(), job_id)

    def purge_calls(self, older_than_ms: int) -> int:
        """Forget call records whose jobs the retention rule has deleted."""
        return self.store.delete_calls(self.clock() - older_than_ms)

    # -- internals -------------------------------------------------------------------------------------

    def _alive(self, tool: WebTool) -> bool:
        """False (and the tool deleted) when its notebook item no longer exists."""
        if self.items.store.get(tool.notebook_id) is not None:
            return True
        self.store.delete(tool.service_name)
        return False

    def _runtime_for(self, user: User, notebook: bytes) -> str:
        if self.runtimes is None:
            return DEFAULT_RUNTIME.runtime_id
        return self.runtimes.choose(user, "", notebook).runtime_id

    def _runtime_of(self, tool: WebTool) -> Runtime:
        if self.runtimes is None:
            return DEFAULT_RUNTIME
        spec = self.runtimes.find(tool.runtime_id) or self.runtimes.default()
        if spec.disabled:
            raise RuntimeDisabled(spec.name, spec.runtime_id)
        return spec.identity


class _ServiceSpec:
    """The parts of ``serviceProperties`` nbjobs reads (None: not given)."""

    def __init__(self, props: Mapping[str, Any]) -> None:
        json_props = props.get("jsonProperties") or {}
        if not isinstance(json_props, Mapping):
            raise InvalidRequest("serviceProperties.jsonProperties must be a JSON object.")
        self.description: str | None = _text(props.get("description"), "description")
        self.title = _text(json_props.get("title"), "jsonProperties.title") or ""
        self.notebook_id = _text(json_props.get("notebookId"), "jsonProperties.notebookId") or ""
        self.access = _text(json_props.get("access"), "jsonProperties.access") or ""
        if self.access and self.access not in ACCESS:
            raise InvalidRequest(
                f"serviceProperties.jsonProperties.access must be one of {', '.join(ACCESS)}."
            )
        self.task_name = ""
        tasks = json_props.get("tasks")
        if tasks is not None:
            if not isinstance(tasks, list) or len(tasks) != 1 or not isinstance(tasks[0], Mapping):
                raise InvalidRequest("serviceProperties.jsonProperties.tasks must list exactly one task.")
            if tasks[0].get("type", "notebook") != "notebook":
                raise InvalidRequest("A notebook web tool task must have type 'notebook'.")
            self.task_name = task_name_of(_text(tasks[0].get("name"), "tasks[0].name") or "")
        retry = json_props.get("retryPolicy")
        if retry is not None and not isinstance(retry, Mapping):
            raise InvalidRequest("serviceProperties.jsonProperties.retryPolicy must be a JSON object.")
        self.retry: RetryPolicy | None = None if retry is None else parse_retry_policy(retry)
        self.notifications: Any = json_props.get("notifications")  # checked by WebToolService._rules

    @classmethod
    def parse(cls, props: Mapping[str, Any], *, creating: bool) -> _ServiceSpec:
        if creating:
            provider = props.get("provider")
            if provider not in (None, "notebooks"):
                raise InvalidRequest(f"Unsupported service provider {provider!r}: use 'notebooks'.")
            kind = props.get("type")
            if kind not in (None, "GPServer"):
                raise InvalidRequest(f"Unsupported service type {kind!r}: use 'GPServer'.")
        return cls(props)


def task_name_of(title: str) -> str:
    """A task name GP clients can use in a URL and as a Python function name."""
    name = _TASK_CHARS.sub("_", title.strip()).strip("_")
    return name or "Notebook"


def _text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"serviceProperties.{where} must be text.")
    return value.strip()


def _bare(service_name: str) -> str:
    return service_name.removesuffix(".GPServer")


def _snapshot_id() -> str:
    return f"execute-notebook-snapshot-{uuid.uuid4().hex}.json"


def _checked(data: bytes) -> ToolParams:
    analysis = analyze(data)
    if analysis.errors:
        raise InvalidRequest("The notebook cannot be published as a web tool.", details=analysis.errors)
    return analysis.params


def _inputs(
    params: ToolParams, values: Mapping[str, Any], task_name: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values to inject, GP inputs to remember) from the request, or one error listing every problem."""
    injected, gp_inputs, problems = _converted(params, values, task_name)
    messages = [message for _, message in problems]
    if len(messages) == 1:
        raise InvalidRequest(messages[0])
    if messages:
        raise InvalidRequest("Invalid web tool inputs.", details=messages)
    return injected, gp_inputs


def _converted(
    params: ToolParams, values: Mapping[str, Any], task_name: str
) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, str]]]:
    """The converted inputs and every problem as (parameter name, message), in request order."""
    problems: list[tuple[str, str]] = []
    for name in values:
        if name not in _RESERVED and not name.startswith("env:") and params.input(name) is None:
            known = ", ".join(p.name for p in params.inputs) or "none"
            problems.append(
                (name, f"Unknown parameter '{name}' for task '{task_name}' (its inputs: {known}).")
            )
    injected: dict[str, Any] = {}
    gp_inputs: dict[str, Any] = {}
    for param in params.inputs:
        raw = values.get(param.name)
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            if param.required:
                problems.append(
                    (param.name, f"Missing required parameter '{param.name}' ({param.type.value}).")
                )
            continue
        try:
            injected[param.name] = convert_input(param, raw)
        except InvalidValue as exc:
            problems.append((param.name, exc.message))
            continue
        gp_inputs[param.name] = _gp_value(param.type, injected[param.name])
    return injected, gp_inputs, problems


def _gp_value(ptype: ParamType, value: Any) -> Any:
    """An injected value as GP clients read inputs back (dates as epoch milliseconds)."""
    if ptype is ParamType.DATE:
        return typed_output(ToolParam("value", ptype), value)
    return value
