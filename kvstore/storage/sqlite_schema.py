"""The SQLite engine's SQL: its schema, its statements, and Record <-> row conversion.

Rules and invariants:
- ``journal_mode=WAL`` and ``synchronous=FULL`` on every connection: once COMMIT returns,
  the transaction has been fsync'd. Transactions are begun and ended explicitly, never
  implicitly (``isolation_level=None``).
- The schema is versioned by ``PRAGMA user_version``: 0 is a new file (the schema is
  created), ``SCHEMA_VERSION`` is this code's, 1 is migrated in one transaction (the
  ``tok`` column filled and indexed), anything else is refused.
- ``tok`` is the key's ring token (``kvstore.core.ring.token``) minus 2^63, so it fits a
  signed INTEGER and sorts as tokens do: anti-entropy reads a token range by index.
- With a journal (a list the writer thread owns), every write that changes ``kv`` appends
  (key, entry it replaced or None, entry now stored or None); the writer hands the list
  to the digest index only once the transaction committed.
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
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from kvstore.core.merkle import Entry
from kvstore.core.ring import token
from kvstore.core.version import Record, Timestamp, newer
from kvstore.storage.base import Hint

SCHEMA_VERSION = 2
TOKEN_OFFSET = 1 << 63

# (key, old entry or None, new entry or None): one committed change to kv
Change = tuple[bytes, Entry | None, Entry | None]

SCHEMA = (
    # WITHOUT ROWID clusters rows by key: point lookups and ordered scans touch one b-tree.
    # The timestamp stays in three columns so the UPSERT can compare it as a row value.
    """CREATE TABLE IF NOT EXISTS kv (
        key     BLOB    NOT NULL PRIMARY KEY,
        value   BLOB,
        wall    INTEGER NOT NULL,
        logical INTEGER NOT NULL,
        node    TEXT    NOT NULL,
        tok     INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS kv_by_token ON kv (tok)",
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
INSERT INTO kv (key, value, wall, logical, node, tok) VALUES (?, ?, ?, ?, ?, ?)
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
        elif version == 1:
            _migrate_from_1(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise RuntimeError(f"{path}: unknown schema version {version}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def db_token(key: bytes) -> int:
    return token(key) - TOKEN_OFFSET


def _migrate_from_1(conn: sqlite3.Connection) -> None:
    # Inside init_schema's transaction: a crash midway leaves version 1, migrated again.
    conn.create_function("kv_token", 1, db_token, deterministic=True)
    conn.execute("ALTER TABLE kv ADD COLUMN tok INTEGER NOT NULL DEFAULT 0")
    conn.execute("UPDATE kv SET tok = kv_token(key)")
    for statement in SCHEMA:
        conn.execute(statement)


def entry_rows(conn: sqlite3.Connection) -> Iterator[tuple[bytes, int, int, str, int]]:
    """Every record's (key, wall, logical, node, tombstone), streamed from one SELECT."""
    return iter(conn.execute("SELECT key, wall, logical, node, value IS NULL FROM kv"))


# -- writes (the writer thread) ------------------------------------------------------


def _entry(key: bytes, wall: int, logical: int, node: str, tombstone: int) -> Entry:
    return Entry(key, Timestamp(wall, logical, node), bool(tombstone))


def _row_to_record(key: bytes, value: bytes | None, wall: int, logical: int, node: str) -> Record:
    return Record(key, value, Timestamp(wall, logical, node))


_OLD_ENTRY = "SELECT wall, logical, node, value IS NULL FROM kv WHERE key = ?"


def apply_records(
    records: list[Record], journal: list[Change] | None, conn: sqlite3.Connection
) -> list[bool]:
    cursor = conn.cursor()
    stored: list[bool] = []
    for record in records:
        ts = record.ts
        key = record.key
        old = None
        if journal is not None:
            row = cursor.execute(_OLD_ENTRY, (key,)).fetchone()
            if row is not None:
                old = _entry(key, *row)
        cursor.execute(UPSERT, (key, record.value, ts.wall, ts.logical, ts.node, db_token(key)))
        # The UPSERT changes a row only when it inserted or its WHERE (newer) held.
        changed = cursor.rowcount > 0
        stored.append(changed)
        if changed and journal is not None:
            journal.append((key, old, Entry(key, ts, record.value is None)))
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


def purge_tombstones(
    older_than_wall_us: int, journal: list[Change] | None, conn: sqlite3.Connection
) -> int:
    # One statement in the writer's transaction: no apply can interleave with it.
    rows = conn.execute(
        "DELETE FROM kv WHERE value IS NULL AND wall < ? RETURNING key, wall, logical, node",
        (older_than_wall_us,),
    ).fetchall()
    if journal is not None:
        journal.extend((k, _entry(k, w, lg, n, True), None) for k, w, lg, n in rows)
    return len(rows)


def drop_records(
    records: list[Record], journal: list[Change] | None, conn: sqlite3.Connection
) -> int:
    # In the writer's transaction, so an apply of a newer version is either before it
    # (the timestamp no longer matches: kept) or after it (stored again).
    dropped = 0
    for r in records:
        cursor = conn.execute(
            "DELETE FROM kv WHERE key = ? AND wall = ? AND logical = ? AND node = ?",
            (r.key, r.ts.wall, r.ts.logical, r.ts.node),
        )
        if cursor.rowcount > 0:
            dropped += cursor.rowcount
            if journal is not None:
                journal.append((r.key, Entry(r.key, r.ts, r.value is None), None))
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


_RANGES_MAX = 256  # token ranges per statement (two parameters each)


def _select_ranges(size: int) -> str:
    values = ",".join(["(?,?)"] * size)
    # The ranges drive the loop, each one an index range scan of kv_by_token.
    return (
        f"WITH r(lo, hi) AS (VALUES {values}) "
        "SELECT key, wall, logical, node, value IS NULL FROM r CROSS JOIN kv "
        "WHERE kv.tok BETWEEN r.lo AND r.hi"
    )


def entries_in(ranges: list[tuple[int, int]], conn: sqlite3.Connection) -> list[Entry]:
    # [lo, hi) as [lo, hi - 1]: the end of the token space, 2^64, is no INTEGER. Many
    # ranges share one statement, padded to a power-of-two size with an empty range so
    # the statement cache holds a handful of statements.
    bounds = [(lo - TOKEN_OFFSET, hi - 1 - TOKEN_OFFSET) for lo, hi in ranges if lo < hi]
    out: list[Entry] = []
    for i in range(0, len(bounds), _RANGES_MAX):
        chunk = bounds[i : i + _RANGES_MAX]
        size = 1 << (len(chunk) - 1).bit_length()
        chunk += [(1, 0)] * (size - len(chunk))
        params = [x for pair in chunk for x in pair]
        rows = conn.execute(_select_ranges(size), params)
        out.extend(_entry(*row) for row in rows)
    return out


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
