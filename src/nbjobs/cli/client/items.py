"""The notebook a job runs, as a portal item of the caller: reused when one holds the same bytes.

An item the client uploads carries the type keyword ``nbjobs:sha256:<hex of the file>``. Before an
upload the caller's items are listed (``/sharing/rest/content/users/<user>``); an item with that
keyword whose data still hashes to it (a write-back may have replaced it since) is used instead.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nbjobs.cli.client.api import Api
from nbjobs.cli.client.errors import ClientError

KEYWORD_PREFIX = "nbjobs:sha256:"
TYPE_KEYWORDS = ("Notebook", "Jupyter", "Python")  # the server's defaults, kept beside the hash


def content_keyword(data: bytes) -> str:
    return KEYWORD_PREFIX + hashlib.sha256(data).hexdigest()


def username_of(api: Api, known: str) -> str:
    """``known``, else who the token belongs to (``community/self``)."""
    if known:
        return known
    me = api.get("/sharing/rest/community/self")
    name = me.get("username") if isinstance(me, dict) else None
    if not isinstance(name, str) or not name:
        raise ClientError("the server did not say who the token belongs to (community/self)")
    return name


def find_item(api: Api, username: str, data: bytes) -> str | None:
    """The id of the caller's newest item holding exactly ``data``, found by its content keyword."""
    keyword = content_keyword(data)
    listing = api.get(f"/sharing/rest/content/users/{quote(username)}", num=10_000)
    items: list[dict[str, Any]] = [i for i in listing.get("items", []) if isinstance(i, dict)]
    candidates = [i for i in items if keyword in (i.get("typeKeywords") or [])]
    for item in sorted(candidates, key=lambda i: i.get("modified") or 0, reverse=True):
        held = api.download(f"/sharing/rest/content/items/{quote(str(item['id']))}/data")
        if content_keyword(held) == keyword:
            return str(item["id"])
    return None


def upload(api: Api, username: str, path: Path, data: bytes) -> str:
    """A new item of ``username`` holding ``data``, titled after the file; its id."""
    answer = api.post(
        f"/sharing/rest/content/users/{quote(username)}/addItem",
        {
            "type": "Notebook",
            "title": path.stem,
            "filename": path.name,
            "typeKeywords": ",".join((*TYPE_KEYWORDS, content_keyword(data))),
        },
        files={"file": (path.name, data, "application/x-ipynb+json")},
    )
    item_id = answer.get("id") if isinstance(answer, dict) else None
    if not isinstance(item_id, str) or not item_id:
        raise ClientError("the server did not return the new item's id")
    return item_id


def item_for(api: Api, username: str, path: Path, data: bytes) -> tuple[str, bool]:
    """The item to run (its id) and whether it was reused rather than uploaded."""
    found = find_item(api, username, data)
    if found is not None:
        return found, True
    return upload(api, username, path, data), False
