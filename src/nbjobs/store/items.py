"""Portal items (stored notebooks) and uploads in parts: the records, the store protocol and the SQL
implementation."""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from nbjobs.models.items import Item, Upload
from nbjobs.store.tables import item_updates, item_upload_parts, item_uploads, items

_META = [c for c in items.c if c.name != "data"]


def _item_from_row(row: Any) -> Item:
    m = row._mapping
    return Item(
        item_id=m["item_id"],
        owner=m["owner"],
        title=m["title"],
        type=m["type"],
        created=m["created"],
        modified=m["modified"],
        size=m["size"],
        filename=m["filename"],
        description=m["description"],
        snippet=m["snippet"],
        tags=tuple(m["tags"] or ()),
        type_keywords=tuple(m["type_keywords"] or ()),
    )


def _item_row(item: Item) -> dict[str, Any]:
    return {
        "item_id": item.item_id,
        "owner": item.owner,
        "title": item.title,
        "type": item.type,
        "created": item.created,
        "modified": item.modified,
        "size": item.size,
        "filename": item.filename,
        "description": item.description,
        "snippet": item.snippet,
        "tags": list(item.tags),
        "type_keywords": list(item.type_keywords),
    }


class SqlItemStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, item: Item, data: bytes) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(items).values(**_item_row(item), data=data))

    def get(self, item_id: str) -> Item | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_META).where(items.c.item_id == item_id)).first()
        return _item_from_row(row) if row else None

    def get_data(self, item_id: str) -> bytes | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(items.c.data).where(items.c.item_id == item_id)).first()
        return bytes(row[0]) if row else None

    def save(self, item: Item, data: bytes | None = None) -> None:
        values = _item_row(item)
        del values["item_id"]
        if data is not None:
            values["data"] = data
        with self.engine.begin() as conn:
            conn.execute(update(items).where(items.c.item_id == item.item_id).values(**values))

    def delete(self, item_id: str) -> bool:
        with self.engine.begin() as conn:
            conn.execute(delete(item_updates).where(item_updates.c.item_id == item_id))
            return conn.execute(delete(items).where(items.c.item_id == item_id)).rowcount == 1

    def list(self, owner: str | None = None) -> list[Item]:
        stmt = select(*_META).order_by(items.c.created.desc(), items.c.item_id)
        if owner is not None:
            stmt = stmt.where(items.c.owner == owner)
        with self.engine.connect() as conn:
            return [_item_from_row(r) for r in conn.execute(stmt)]

    def add_pending_update(self, job_id: str, item_id: str, now: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(item_updates).values(job_id=job_id, item_id=item_id, created=now))

    def pending_updates(self) -> builtins.list[tuple[str, str]]:
        stmt = select(item_updates.c.job_id, item_updates.c.item_id).order_by(item_updates.c.created)
        with self.engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(stmt)]

    def drop_pending_update(self, job_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(item_updates).where(item_updates.c.job_id == job_id))

    def add_upload(self, upload: Upload) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(item_uploads).values(
                    item_id=upload.item_id,
                    owner=upload.owner,
                    properties=upload.properties,
                    created=upload.created,
                )
            )

    def get_upload(self, item_id: str) -> Upload | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(item_uploads).where(item_uploads.c.item_id == item_id)).first()
        if row is None:
            return None
        m = row._mapping
        return Upload(m["item_id"], m["owner"], m["created"], dict(m["properties"] or {}))

    def put_part(self, item_id: str, part_num: int, data: bytes) -> bool:
        key = (item_upload_parts.c.item_id == item_id) & (item_upload_parts.c.part_num == part_num)
        with self.engine.begin() as conn:
            # Write first (SQLite: a read-then-write transaction can fail with "database is locked"), then
            # re-check the upload inside the transaction so a part racing a commit is not left orphaned.
            conn.execute(delete(item_upload_parts).where(key))
            upload = select(item_uploads.c.item_id).where(item_uploads.c.item_id == item_id)
            if conn.execute(upload).first() is None:
                return False
            row = {"item_id": item_id, "part_num": part_num, "size": len(data), "data": data}
            conn.execute(insert(item_upload_parts).values(**row))
        return True

    def part_sizes(self, item_id: str) -> dict[int, int]:
        stmt = select(item_upload_parts.c.part_num, item_upload_parts.c.size).where(
            item_upload_parts.c.item_id == item_id
        )
        with self.engine.connect() as conn:
            return {r[0]: r[1] for r in conn.execute(stmt)}

    def upload_data(self, item_id: str) -> bytes:
        stmt = (
            select(item_upload_parts.c.data)
            .where(item_upload_parts.c.item_id == item_id)
            .order_by(item_upload_parts.c.part_num)
        )
        with self.engine.connect() as conn:
            return b"".join(bytes(r[0]) for r in conn.execute(stmt))

    def finish_upload(self, item: Item, data: bytes) -> bool:
        with self.engine.begin() as conn:
            gone = conn.execute(delete(item_uploads).where(item_uploads.c.item_id == item.item_id))
            if gone.rowcount != 1:  # committed (or expired) meanwhile by another request
                return False
            conn.execute(delete(item_upload_parts).where(item_upload_parts.c.item_id == item.item_id))
            conn.execute(insert(items).values(**_item_row(item), data=data))
        return True

    def drop_upload(self, item_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(item_upload_parts).where(item_upload_parts.c.item_id == item_id))
            conn.execute(delete(item_uploads).where(item_uploads.c.item_id == item_id))

    def drop_uploads_before(self, created: int) -> int:
        old = select(item_uploads.c.item_id).where(item_uploads.c.created < created)
        with self.engine.begin() as conn:
            conn.execute(delete(item_upload_parts).where(item_upload_parts.c.item_id.in_(old)))
            return conn.execute(delete(item_uploads).where(item_uploads.c.created < created)).rowcount
