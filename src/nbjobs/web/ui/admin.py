"""The app's admin pages (administrators only): users — list, add, disable and enable. The services and
``service/authz.py`` decide who may; a refusal renders the error page (or the API's 403 envelope)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import NbJobsError
from nbjobs.models.accounts import ORG_USER, User
from nbjobs.service.authz import require_admin
from nbjobs.web.deps import Form, Nb
from nbjobs.web.ui.pages import base, page, redirect, render
from nbjobs.web.ui.session import Visit, Visitor

router = APIRouter(include_in_schema=False)  # included by routes.py under /app
ADMINS_ONLY = "Administrators only: this page is for administrators."


def _admin(visit: Visit) -> User:
    user = visit.signed_in()
    require_admin(user, ADMINS_ONLY)
    return user


def _users_page(request: Request, nb: Nb, visit: Visit, status: int = 200, message: str = "") -> Response:
    user = _admin(visit)
    users = sorted(nb.users.list(), key=lambda u: u.username)
    return render(request, "admin_users.html", status_code=status, user=user, csrf=visit.csrf, nav="admin",
                  users=users, message=message)  # fmt: skip


@router.get("/admin/users")
@page
def users_page(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    return _users_page(request, nb, visit)


@router.post("/admin/users/add")
@page
def add_user(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    _admin(visit)
    try:
        nb.users.add(params.text("username"), params.text("password"), role=params.text("role") or ORG_USER)
    except NbJobsError as exc:  # a bad name, role or password; a taken name
        if visit.wants_json:
            raise
        return _users_page(request, nb, visit, 400, f"The user was not added: {exc.message}")
    return redirect(f"{base(request)}/admin/users")


@router.post("/admin/users/{username}/disabled")
@page
def set_disabled(request: Request, nb: Nb, params: Form, visit: Visitor, username: str) -> Response:
    _admin(visit)
    nb.users.set_disabled(username, params.text("disabled") == "true")
    return redirect(f"{base(request)}/admin/users")
