"""The SQLite engine's SQL: its schema, its statements, and Record <-> row conversion.

Rules and invariants:
- ``journal_mode=WAL`` and ``synchronous=FULL`` on every connection: once COMMIT returns,
  the transaction has been fsync'd. Transactions are begun and ended explicitly, never
  implicitly (``isolation_level=None``).
- The schema is versioned by ``PRAGMA user_version``: 0 is a new file (the schema is
  created), ``SCHEMA_VERSION`` is this code's, anything else is refused.
- Last-writer-wins is decided inside SQLite by a single UPSERT whose WHERE compares the
  row values ``(wall, logical, node)``: the same order as ``Timestamp`` tuples and
  ``newer``. Records run one after another inside the transaction, so two records for one
  key in one batch resolve as if applied in order, and ``rowcount`` says whether each
  record was stored.
- Apart from ``init_schema``, nothing here begins or ends a transaction: each statement
  function runs on the engine thread that owns its connection, inside the transaction that
  thread has open (see ``group_commit``), so the thread alone decides what commits.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import cast

from kvstore.core.version import Record, Timestamp, newer
from kvstore.storage.base import Hint

SCHEMA_VERSION = 1

SCHEMA = (
    # WITHOUT ROWID clusters rows by key: point lookups and ordered scans touch one b-tree.
    # The timestamp stays in three columns so the UPSERT can compare it as a row value.
    """CREATE TABLE IF NOT EXISTS kv (
        key     BLOB    NOT NULL PRIMARY KEY,
        value   BLOB,
        wall    INTEGER NOT NULL,
        logical INTEGER NOT NULL,
        node    TEXT    NOT NULL
    ) WITHOUT ROWID""",
    # AUTOINCREMENT: a deleted hint id is never reused, even across restarts, so a late
    # delete_hints from a handoff that raced a crash can never remove a newer hint.
    """CREATE TABLE IF NOT EXISTS hints (
        hint_id      INTEGER PRIMARY KEY AUTOINCREMENT,
        owner        TEXT    NOT NULL,
        key          BLOB    NOT NULL,
        value        BLOB,
        tombstone    INTEGER NOT NULL CHECK (tombstone = (value IS NULL)),
        wall         INTEGER NOT NULL,
        logical      INTEGER NOT NULL,
        node         TEXT    NOT NULL,
        stored_at_us INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS hints_by_owner ON hints (owner, stored_at_us, hint_id)",
    "CREATE INDEX IF NOT EXISTS hints_by_age ON hints (stored_at_us, hint_id)",
    "CREATE INDEX IF NOT EXISTS hints_by_owner_key ON hints (owner, key)",
)

UPSERT = """
INSERT INTO kv (key, value, wall, logical, node) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    value = excluded.value, wall = excluded.wall,
    logical = excluded.logical, node = excluded.node
WHERE (excluded.wall, excluded.logical, excluded.node) > (kv.wall, kv.logical, kv.node)
"""

_INSERT_HINT = """
INSERT INTO hints (owner, key, value, tombstone, wall, logical, node, stored_at_us)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""

_HINT_COLUMNS = "hint_id, owner, key, value, tombstone, wall, logical, node, stored_at_us"

# Gets are looked up in IN lists of power-of-two sizes (padded with a repeated key) so the
# connection's statement cache holds a handful of statements instead of one per size.
_IN_MAX = 512


# -- opening -------------------------------------------------------------------------


def connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection in WAL mode with ``synchronous=FULL``, for one engine thread."""
    # isolation_level=None: transactions are begun and ended explicitly, never implicitly.
    # check_same_thread=False: made here, then used only by the one thread that owns it.
    conn = sqlite3.connect(
        path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    try:
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(mode).lower() != "wal":
            raise RuntimeError(f"{path}: cannot use WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
    except BaseException:
        conn.close()
        raise
    return conn


def init_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create the schema in a new file, or check an existing file's version."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version == 0:
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise RuntimeError(f"{path}: unknown schema version {version}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# -- writes (the writer thread) ------------------------------------------------------


def _row_to_record(key: bytes, value: bytes | None, wall: int, logical: int, node: str) -> Record:
    return Record(key, value, Timestamp(wall, logical, node))


def apply_records(records: list[Record], conn: sqlite3.Connection) -> list[bool]:
    cursor = conn.cursor()
    stored: list[bool] = []
    for record in records:
        ts = record.ts
        cursor.execute(UPSERT, (record.key, record.value, ts.wall, ts.logical, ts.node))
        # The UPSERT changes a row only when it inserted or its WHERE (newer) held.
        stored.append(cursor.rowcount > 0)
    return stored


def add_hint(owner: str, record: Record, stored_at_us: int, conn: sqlite3.Connection) -> int:
    ts = record.ts
    cursor = conn.execute(
        _INSERT_HINT,
        (
            owner,
            record.key,
            record.value,
            int(record.value is None),
            ts.wall,
            ts.logical,
            ts.node,
            stored_at_us,
        ),
    )
    hint_id = cursor.lastrowid
    assert hint_id is not None
    return hint_id


def purge_tombstones(older_than_wall_us: int, conn: sqlite3.Connection) -> int:
    # One statement in the writer's transaction: no apply can interleave with it.
    cursor = conn.execute("DELETE FROM kv WHERE value IS NULL AND wall < ?", (older_than_wall_us,))
    return cursor.rowcount


def drop_records(records: list[Record], conn: sqlite3.Connection) -> int:
    # In the writer's transaction, so an apply of a newer version is either before it
    # (the timestamp no longer matches: kept) or after it (stored again).
    dropped = 0
    for r in records:
        cursor = conn.execute(
            "DELETE FROM kv WHERE key = ? AND wall = ? AND logical = ? AND node = ?",
            (r.key, r.ts.wall, r.ts.logical, r.ts.node),
        )
        dropped += cursor.rowcount
    return dropped


def delete_hints(hint_ids: list[int], conn: sqlite3.Connection) -> None:
    conn.executemany("DELETE FROM hints WHERE hint_id = ?", [(i,) for i in hint_ids])


# -- reads (the reader thread) -------------------------------------------------------


def _select_in(size: int) -> str:
    marks = ",".join("?" * size)
    return f"SELECT key, value, wall, logical, node FROM kv WHERE key IN ({marks})"


def lookup(keys: list[bytes], conn: sqlite3.Connection) -> dict[bytes, Record]:
    found: dict[bytes, Record] = {}
    for i in range(0, len(keys), _IN_MAX):
        chunk = keys[i : i + _IN_MAX]
        size = 1 << (len(chunk) - 1).bit_length()
        params = chunk + [chunk[-1]] * (size - len(chunk))
        # Iterating to the end resets the statement, so no read lock outlives the batch.
        for key, value, wall, logical, node in conn.execute(_select_in(size), params):
            found[key] = _row_to_record(key, value, wall, logical, node)
    return found


def scan_page(
    lo: bytes, inclusive: bool, end: bytes | None, limit: int, conn: sqlite3.Connection
) -> list[Record]:
    op = ">=" if inclusive else ">"
    sql = f"SELECT key, value, wall, logical, node FROM kv WHERE key {op} ?"
    params: list[object] = [lo]
    if end is not None:
        sql += " AND key < ?"
        params.append(end)
    sql += " ORDER BY key LIMIT ?"
    params.append(limit)
    return [_row_to_record(*row) for row in conn.execute(sql, params)]


def count(conn: sqlite3.Connection) -> int:
    (n,) = conn.execute("SELECT COUNT(*) FROM kv").fetchone()
    return cast(int, n)


def hinted(owner: str, key: bytes, conn: sqlite3.Connection) -> Record | None:
    sql = "SELECT value, tombstone, wall, logical, node FROM hints WHERE owner = ? AND key = ?"
    best: Record | None = None
    for value, tombstone, wall, logical, node in conn.execute(sql, (owner, key)):
        best = newer(best, _row_to_record(key, None if tombstone else value, wall, logical, node))
    return best


def hints(owner: str | None, limit: int, conn: sqlite3.Connection) -> list[Hint]:
    if owner is None:
        sql = f"SELECT {_HINT_COLUMNS} FROM hints ORDER BY stored_at_us, hint_id LIMIT ?"
        rows = conn.execute(sql, (limit,)).fetchall()
    else:
        sql = (
            f"SELECT {_HINT_COLUMNS} FROM hints WHERE owner = ?"
            " ORDER BY stored_at_us, hint_id LIMIT ?"
        )
        rows = conn.execute(sql, (owner, limit)).fetchall()
    return [
        Hint(
            hint_id,
            hint_owner,
            _row_to_record(key, None if tombstone else value, wall, logical, node),
            stored_at_us,
        )
        for hint_id, hint_owner, key, value, tombstone, wall, logical, node, stored_at_us in rows
    ]


def hint_counts(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT owner, COUNT(*) FROM hints GROUP BY owner").fetchall()
    return {owner: n for owner, n in rows}
