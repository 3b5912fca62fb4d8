"""Per-job credentials: a short-lived token for the job's owner, in the file ArcGIS notebooks read.

Inside a notebook, ``GIS("home")`` of the ArcGIS API for Python reads the JSON file named by
``NB_AUTH_FILE`` (``privatePortalUrl``, ``publicPortalUrl``, ``referer``, ``token``, ``expiration``)
and reaches the portal as that user. nbjobs writes one per job, valid for the job's time limit plus
a margin, and revokes the token as soon as the job ends.
"""

from __future__ import annotations

import math

from nbjobs.errors import NbJobsError
from nbjobs.execution.contract import JobCredentials
from nbjobs.models.jobs import Job
from nbjobs.service.accounts.tokens import TokenService
from nbjobs.service.accounts.users import UserService
from nbjobs.settings import Settings

MARGIN_MINUTES = 5


def portal_url(settings: Settings) -> str:
    """The portal's URL as a kernel on this machine reaches it."""
    if settings.server.public_url:
        return settings.server.public_url.rstrip("/")
    host = "127.0.0.1" if settings.server.host in ("0.0.0.0", "::", "") else settings.server.host
    scheme = "http" if settings.server.insecure_http else "https"
    return f"{scheme}://{host}:{settings.server.port}/{settings.server.context}"


class JobCredentialIssuer:
    """Issues and revokes the token a job runs with (the Supervisor's ``credentials``)."""

    def __init__(self, users: UserService, tokens: TokenService, settings: Settings) -> None:
        self.users = users
        self.tokens = tokens
        self.settings = settings

    def __call__(self, job: Job, minutes: float) -> JobCredentials:
        url = portal_url(self.settings)
        try:
            user = self.users.get(job.username)
        except NbJobsError:
            user = None
        if user is None or user.disabled:  # a job of a vanished user runs without a token
            anonymous = {"privatePortalUrl": url, "publicPortalUrl": url, "referer": url}
            return JobCredentials(anonymous, lambda: None)
        issued = self.tokens.issue(user, math.ceil(minutes) + MARGIN_MINUTES, client="referer")
        auth = {
            "privatePortalUrl": url,
            "publicPortalUrl": url,
            "referer": url,
            "token": issued.token,
            "expiration": issued.expires,
        }

        def revoke() -> None:  # TokenService.revoke's bool (was it still live) means nothing here
            self.tokens.revoke(issued.token)

        return JobCredentials(auth, revoke)
