"""Authorization: who may do what. Every admin, owner and privilege rule of the services is here.

Services take the calling user and ask this module; routes only authenticate (``web/deps.py``) and
pass the user on. The rules, as ArcGIS has them:

- administrators (role ``org_admin``) hold every privilege and see everything;
- a user sees and changes what they own; what they may not see answers as if it did not exist
  (jobs, items, tasks, receivers, web tools), so ids of others cannot be probed;
- a privilege string gates each kind of operation (``premium:publisher:createNotebooks`` to run
  notebooks, ``...:scheduleNotebooks`` for tasks, ...);
- some resources are for administrators only: runtimes changes, the server configuration, the
  machines view, webhook receivers.
"""

from __future__ import annotations

from nbjobs.errors import PermissionDenied
from nbjobs.models.accounts import ORG_ADMIN, Principal, User

CREATE_NOTEBOOKS = "premium:publisher:createNotebooks"
SCHEDULE_NOTEBOOKS = "premium:publisher:scheduleNotebooks"
PUBLISH_WEB_TOOLS = "portal:publisher:publishServerGPServices"
RUN_WEB_TOOL = "portal:user:runWebTool"
ADVANCED_NOTEBOOKS = "premium:publisher:createAdvancedNotebooks"

NOTEBOOK_PRIVILEGES = (CREATE_NOTEBOOKS, SCHEDULE_NOTEBOOKS, PUBLISH_WEB_TOOLS, RUN_WEB_TOOL)
USER_PRIVILEGES = (
    "portal:user:createItem",
    "portal:user:viewOrgItems",
    "portal:user:viewOrgUsers",
    *NOTEBOOK_PRIVILEGES,
)
ADMIN_PRIVILEGES = (
    *USER_PRIVILEGES,
    ADVANCED_NOTEBOOKS,
    "portal:admin:viewUsers",
    "portal:admin:updateUsers",
    "portal:admin:viewItems",
    "portal:admin:updateItems",
    "portal:admin:deleteItems",
    "portal:admin:manageWebhooks",
    "portal:admin:createGPWebhook",
)

# What each admin-only resource says to anyone else.
RUNTIMES = "Only administrators can change runtimes."
CONFIGURATION = "Only administrators can change the server configuration."
MACHINES = "Only administrators can see the machines."
WEBHOOK_RECEIVERS = "Only administrators manage webhook receivers."
STATISTICS = "Only administrators can see the usage statistics."
LOGS = "Only administrators can read and manage the logs."
METRICS = "Only administrators can read the metrics."


def default_privileges(role: str) -> tuple[str, ...]:
    """The privileges a new user of ``role`` gets unless others are given."""
    return ADMIN_PRIVILEGES if role == ORG_ADMIN else USER_PRIVILEGES


def require_privilege(user: User, privilege: str) -> None:
    """PermissionDenied unless ``user`` holds ``privilege`` (administrators hold every privilege)."""
    if not user.is_admin and privilege not in user.privileges:
        raise PermissionDenied(
            "You do not have permissions to access this resource or perform this operation.",
            details=[f"Missing privilege {privilege}"],
        )


def require_admin(user: User | Principal, message: str) -> None:
    """PermissionDenied with ``message`` unless ``user`` is an administrator."""
    if not user.is_admin:
        raise PermissionDenied(message)


def require_notebook_user(user: User) -> None:
    """Reading runtimes and running notebooks is for notebook users."""
    require_privilege(user, CREATE_NOTEBOOKS)


def may_see(who: Principal, owner: str) -> bool:
    """True when ``who`` may see (and so act on) what ``owner`` owns."""
    return who.is_admin or who.username == owner


def may_act_for(who: Principal, username: str) -> bool:
    """True when ``who`` may act in the name of ``username`` (add items, manage tasks): usernames
    compare case-insensitively, as ArcGIS portals do."""
    return who.is_admin or who.username.lower() == (username or "").lower()


def owner_scope(who: Principal) -> str | None:
    """The owner a listing is narrowed to: None (everyone's) for administrators, else ``who``."""
    return None if who.is_admin else who.username


# The machine's operator: who the CLI acts as (`nbjobs runtimes add`, ...). Never a signed-in user:
# no token is ever issued for it and no route can reach it.
OPERATOR = User(
    username="(operator)",
    password_hash="",
    role=ORG_ADMIN,
    privileges=ADMIN_PRIVILEGES,
    created=0,
    modified=0,
    full_name="The machine's operator (command line)",
)
