"""One rooted error tree. Each class's docstring is its default message; ``code`` is the ArcGIS code.

The web layer maps this tree to the two ArcGIS error envelopes in one place; nothing else decides
what a client sees when something goes wrong.
"""

from __future__ import annotations


class NbJobsError(Exception):
    """An nbjobs operation failed."""

    code: int = 500

    def __init__(self, message: str | None = None, *, details: list[str] | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.details = details or []
        super().__init__(self.message)


class InvalidRequest(NbJobsError):
    """The request is invalid."""

    code = 400


class InvalidNotebook(InvalidRequest):
    """The file is not a valid Jupyter notebook."""


class InvalidParameters(InvalidRequest):
    """notebookParameters must be a JSON object of names to values."""


class NotFound(NbJobsError):
    """The requested resource does not exist."""

    code = 404


class JobNotFound(NotFound):
    """Job not found."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Job '{job_id}' does not exist or is inaccessible.")
        self.job_id = job_id


class CannotCancel(NbJobsError):
    """Unable to cancel job."""

    code = 500  # ArcGIS answers a cancel of an ended job with code 500 and this exact text.

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Unable to cancel job :[{job_id}]")
        self.job_id = job_id


class InvalidTransition(NbJobsError):
    """The job is not in a state that allows this change."""

    code = 409


class PermissionDenied(NbJobsError):
    """You do not have permissions to access this resource or perform this operation."""

    code = 403


class StoreError(NbJobsError):
    """The job store is unavailable or its data is unreadable."""


class StoreUnavailable(StoreError):
    """The database is unavailable right now (restarting or unreachable); try again shortly."""

    code = 503  # transient: nothing was changed, the same request may succeed in a moment


class DiskFull(StoreUnavailable):
    """The server has no disk space left to store this request; nothing was changed. Try again later."""

    # an admin frees space; the server needs no restart


class StoreVersionError(StoreError):
    """The database was written by a newer nbjobs: its schema revision is unknown to this one."""


class ConfigurationError(NbJobsError):
    """The server configuration is invalid."""


class ItemNotFound(NotFound):
    """Item does not exist or is inaccessible."""

    code = 400  # what ArcGIS portals answer for an unknown or another user's item

    def __init__(self, item_id: str) -> None:
        super().__init__("Item does not exist or is inaccessible.", details=[f"itemId: {item_id}"])
        self.item_id = item_id


class SnapshotNotFound(NotFound):
    """Snapshot does not exist."""

    code = 400  # a bad parameter of an item the caller may see, as ArcGIS answers an unknown resource

    def __init__(self, resource_key: str) -> None:
        super().__init__(
            f"Snapshot '{resource_key}' does not exist for this item.",
            details=[f"resourceKey: {resource_key}"],
        )
        self.resource_key = resource_key


class SnapshotLimitReached(InvalidRequest):
    """The notebook has reached its maximum number of snapshots."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"Unable to create the snapshot: this notebook already has the maximum of {limit} snapshots "
            "(maxSnapshotsPerNotebookItem). Delete one or more snapshots, then try again."
        )
        self.limit = limit


class UserNotFound(NotFound):
    """User does not exist or is inaccessible."""


class PayloadTooLarge(InvalidRequest):
    """The request body is larger than this server accepts."""

    code = 413


class JobLimitReached(InvalidRequest):
    """Too many jobs: you have reached the maximum number of jobs waiting or running."""

    code = 429  # try again once some of your jobs have ended


class AuthError(NbJobsError):
    """Authentication failed."""


class TokenRequired(AuthError):
    """Token Required."""

    code = 499


class InvalidToken(AuthError):
    """Invalid token."""

    code = 498


class InvalidCredentials(AuthError):
    """Invalid username or password."""

    code = 400


class TooManyLogons(InvalidCredentials):
    """Too many invalid logon attempts. Please try again later."""

    def __init__(self) -> None:  # ArcGIS answers a locked sign-in like a failed one, with this detail
        super().__init__("Unable to generate token.", details=[(self.__doc__ or "").strip()])


class UserExists(InvalidRequest):
    """A user with that name already exists."""

    code = 409


# -- automation: scheduled tasks and webhook receivers (issue 6) ------------------------------------


class TaskNotFound(NotFound):
    """Task does not exist or is inaccessible."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"Task '{task_id}' does not exist or is inaccessible.")
        self.task_id = task_id


class RunNotFound(NotFound):
    """Run does not exist or is inaccessible."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"Run '{run_id}' does not exist or is inaccessible.")
        self.run_id = run_id


class UnsupportedTaskType(InvalidRequest):
    """Unsupported task type: this server runs only 'ExecuteNotebook' tasks."""


class TaskLimitReached(InvalidRequest):
    """You have reached the maximum number of active tasks."""


class ReceiverNotFound(NotFound):
    """Webhook receiver does not exist or is inaccessible."""

    def __init__(self, receiver_id: str) -> None:
        super().__init__(f"Webhook receiver '{receiver_id}' does not exist or is inaccessible.")
        self.receiver_id = receiver_id


class WebhookRejected(NbJobsError):
    """The webhook event was rejected."""

    code = 403


class SignatureMissing(WebhookRejected):
    """The webhook event carries no signature header this receiver accepts."""

    code = 401


class SignatureMismatch(WebhookRejected):
    """The webhook event signature does not match the payload."""


class ReceiverDisabled(WebhookRejected):
    """The webhook receiver is disabled."""


class RunAsUserDisabled(WebhookRejected):
    """The user this webhook receiver runs notebooks as is disabled."""


class RateLimited(WebhookRejected):
    """Too many webhook events for this receiver; try again later."""

    code = 429


# -- runtimes (issue 4) -----------------------------------------------------------------------------


class RuntimeNotFound(NotFound):
    """Runtime does not exist."""

    def __init__(self, runtime_id: str) -> None:
        super().__init__(f"Runtime '{runtime_id}' does not exist.")
        self.runtime_id = runtime_id


class UnknownRuntimeId(RuntimeNotFound):
    """notebookRuntimeId names no runtime of this server."""

    code = 400  # a bad parameter of executeNotebook, as an unknown itemId is


class RuntimeDisabled(InvalidRequest):
    """The runtime is disabled."""

    def __init__(self, name: str, runtime_id: str) -> None:
        super().__init__(f"Runtime '{name}' ({runtime_id}) is disabled.")
        self.runtime_id = runtime_id


class RuntimesInvalid(NbJobsError):
    """One or more runtimes cannot start a kernel."""

    code = 500


# -- web tools (issue 7) ----------------------------------------------------------------------------


class ServiceNotFound(NotFound):
    """Service not found."""

    def __init__(self, service_name: str) -> None:
        super().__init__(f"Service {service_name}/GPServer not found")
        self.service_name = service_name


class GPTaskNotFound(NotFound):
    """Task not found."""

    def __init__(self, service_name: str, task_name: str) -> None:
        super().__init__(f"Task '{task_name}' not found in service {service_name}/GPServer")
        self.task_name = task_name


class WebToolExists(InvalidRequest):
    """A web tool has already been published from this notebook."""

    code = 409


class WebToolFailed(NbJobsError):
    """Error executing tool."""

    code = 500  # what a synchronous GP execute answers when the tool fails


# -- notifications ------------------------------------------------------------------------------------


class InvalidNotificationRule(InvalidRequest):
    """A notification rule that cannot be used: unknown event, bad address or URL, missing secret."""


class NotificationTargetRefused(InvalidNotificationRule):
    """A notification URL whose host is (or resolves to) a loopback, private, link-local or otherwise
    reserved address, and is not on the admin's allow-list (server-side request forgery)."""


class NotebookNotFound(NotFound):
    """An open notebook (interactive) that does not exist, is closed, or is another user's."""

    def __init__(self, notebook_id: str) -> None:
        super().__init__(f"Notebook '{notebook_id}' was not found.")


class ContainerNotFound(NotFound):
    """A notebook container (a user's Jupyter server) that does not exist or is another user's."""

    def __init__(self, container_id: str) -> None:
        super().__init__(f"Container '{container_id}' was not found.")


class ContainerLimitReached(InvalidRequest):
    """No notebook container can start: the node runs maxContainersPerNode already."""

    code = 429
