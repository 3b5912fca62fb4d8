"""The portal subset at ``/sharing/rest``: root, info, the organization, its servers and its users."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs import __version__
from nbjobs.errors import UserNotFound
from nbjobs.web.deps import Form, MaybeSignedIn, Nb, SignedIn
from nbjobs.web.render import Link, respond
from nbjobs.web.routing import operation
from nbjobs.web.views import ORG_ID, SERVER_ID, base_url, user_view

PORTAL_VERSION = "11.3"
router = APIRouter(prefix="/sharing/rest")
TAGS = ("portal",)


@operation(router, "", summary="Portal root: currentVersion", tags=TAGS)
def portal_root(request: Request, params: Form) -> Response:
    return respond(
        request,
        {"currentVersion": PORTAL_VERSION},
        title="Portal Directory",
        links=[
            Link("info", "info"),
            Link("portals/self", "portals/self"),
            Link("community/self", "community/self"),
            Link("generateToken", "generateToken"),
        ],
    )


@operation(router, "/info", summary="Portal info: authInfo", tags=TAGS)
def portal_info(request: Request, nb: Nb, params: Form) -> Response:
    base = base_url(request, nb.settings)
    return respond(
        request,
        {
            "owningSystemUrl": base,
            "authInfo": {
                "tokenServicesUrl": f"{base}/sharing/rest/generateToken",
                "isTokenBasedSecurity": True,
            },
            "fullVersion": PORTAL_VERSION,
            "currentVersion": PORTAL_VERSION,
        },
        title="Info",
    )


def _portal_self(request: Request, nb: Nb, user: MaybeSignedIn) -> dict:
    base = base_url(request, nb.settings)
    host = request.url.netloc
    data = {
        "id": ORG_ID,
        "name": "nbjobs",
        "portalName": "nbjobs",
        "portalMode": "multitenant",
        "isPortal": True,
        "portalHostname": f"{host}/{nb.settings.server.context}",
        "urlKey": None,
        "customBaseUrl": None,
        "allSSL": request.url.scheme == "https",
        "httpPort": 80,
        "httpsPort": 443,
        "supportsOAuth": True,
        "currentVersion": PORTAL_VERSION,
        "portalProperties": {},
        "helperServices": {},
        "rotatorPanels": [],
        "nbjobsVersion": __version__,
        "notebookServerUrl": f"{base}/admin",
    }
    if nb.settings.server.portal_deployment == "kubernetes":
        data["portalDeploymentType"] = "ArcGISEnterpriseOnKubernetes"  # what the arcgis client looks at
    if user is not None:
        data["user"] = user_view(user)
    return data


@operation(router, "/portals/self", summary="The organization (and the signed-in user)", tags=TAGS)
def portals_self(request: Request, nb: Nb, user: MaybeSignedIn, params: Form) -> Response:
    return respond(
        request, _portal_self(request, nb, user), title="Portal self", links=[Link("servers", "servers")]
    )


@operation(router, "/portals/{portal_id}", summary="The organization by id", tags=TAGS)
def portal_by_id(request: Request, portal_id: str, nb: Nb, user: MaybeSignedIn, params: Form) -> Response:
    if portal_id not in ("self", ORG_ID):
        raise UserNotFound(f"Portal '{portal_id}' does not exist.")
    return respond(
        request, _portal_self(request, nb, user), title="Portal", links=[Link("servers", "servers")]
    )


@operation(
    router, "/portals/{portal_id}/servers", summary="Servers: advertises this notebook server", tags=TAGS
)
def portal_servers(request: Request, portal_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    if portal_id not in ("self", ORG_ID):
        raise UserNotFound(f"Portal '{portal_id}' does not exist.")
    base = base_url(request, nb.settings)
    server = {
        "id": SERVER_ID,
        "name": request.url.netloc,
        "url": base,
        "adminUrl": base,
        "adminPublicUrl": base,
        "isHosted": False,
        "serverType": "ArcGIS",
        "serverRole": "FEDERATED_SERVER",
        "serverFunction": "NotebookServer",
        "serverVersion": PORTAL_VERSION,
    }
    return respond(request, {"servers": [server]}, title="Servers")


@operation(router, "/community/self", summary="The signed-in user", tags=TAGS)
def community_self(request: Request, user: SignedIn, params: Form) -> Response:
    return respond(request, user_view(user), title=f"User {user.username}")


@operation(
    router, "/community/users/{username}", summary="A user (yourself, or anyone for an admin)", tags=TAGS
)
def community_user(request: Request, username: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    return respond(request, user_view(nb.users.view(user, username)), title=f"User {username}")
