"""The embedded SQLite store: opening, schema, transactions, and blob helpers.

WAL mode plus a long busy timeout and ``BEGIN IMMEDIATE`` write transactions (retried) let two
``triage ingest`` processes write to the same store at once without "database is locked"
reaching the user. Everything a write stage does happens inside ``Store.transaction()``, so a
crash, kill or Ctrl-C leaves the store consistent.
"""

from __future__ import annotations

import operator
import sqlite3
import time
import zlib
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import orjson

from triage.errors import UserError
from triage.records import Frame as _Frame

#: 2 added the ``originals`` table (the schema script only adds what is missing)
SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 60_000
#: page size of newly created stores
PAGE_SIZE = 16384


def _schema_sql() -> str:
    return resources.files("triage.store").joinpath("schema.sql").read_text(encoding="utf-8")


def pack(obj: Any) -> bytes:
    """Compress a JSON-able object for a BLOB column."""
    return compress_blob(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS, default=_default))


def unpack(blob: bytes | None) -> Any:
    """The object ``pack``/``compress_blob`` stored.

    An incident ``detail`` written by ingest holds the report's raw ``usedImages`` as
    ``images_raw`` (building image records at ingest costs more than parsing everything else);
    it is returned with the usual ``images`` list (the dicts a normal parse would have stored),
    so every reader sees one format.
    """
    if blob is None:
        return None
    obj = orjson.loads(decompress_blob(blob))
    if type(obj) is dict and "images_raw" in obj:
        obj["images"] = _images_from_raw(obj.pop("images_raw"))
    return obj


def _images_from_raw(raw: Any) -> list:
    from triage.reports.ips import images_from_raw

    return orjson.loads(orjson.dumps(images_from_raw(raw), option=orjson.OPT_NON_STR_KEYS,
                                     default=_default))


# Blob compression: zstd level 1 when the ``zstandard`` package is there (about 3x faster than
# zlib level 1 and 20% smaller on report details), else zlib. Readers tell the two apart by the
# zstd frame magic, so stores with both kinds of blob (older rows, other writers) read fine.
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_zstd_c = None
_zstd_d = None


def _zstd():
    try:
        import zstandard
    except ImportError:  # pragma: no cover - optional speed-up
        return None
    return zstandard


def compress_blob(data: bytes) -> bytes:
    """zstd-1 (or zlib-1 without ``zstandard``) of ``data``; read back with decompress_blob."""
    global _zstd_c
    if _zstd_c is None:
        z = _zstd()
        _zstd_c = z.ZstdCompressor(level=1) if z is not None else False
    if _zstd_c is False:
        return zlib.compress(data, 1)
    return _zstd_c.compress(data)


def decompress_blob(blob: bytes) -> bytes:
    global _zstd_d
    if blob[:4] == _ZSTD_MAGIC:
        if _zstd_d is None:
            z = _zstd()
            if z is None:
                raise UserError("this store holds zstd-compressed data: "
                                "install the 'zstandard' package")
            _zstd_d = z.ZstdDecompressor()
        return _zstd_d.decompress(blob)
    return zlib.decompress(blob)


_FRAME_COLUMNS = [f for f in _Frame.__dataclass_fields__]
_frame_row = operator.attrgetter(*_FRAME_COLUMNS)


def dump_frames(frames: Any) -> bytes | None:
    """The ``incidents.frames`` / ``last_exception`` value for a list of frames (Frame records
    or dicts): zstd-compressed JSON. A crashing thread is 30-600 frames of ~500 bytes of JSON
    each (stack overflows are the long ones) and compresses 10-50x; read with
    :func:`load_frames`. Frame records are written column-wise,
    ``{"frame_columns": [...], "rows": [[...], ...]}`` (half the encoding time of one object
    per frame; ingest writes one per report), dicts as a plain JSON array."""
    if frames is None:
        return None
    if frames and all(type(f) is _Frame for f in frames):
        frames = {"frame_columns": _FRAME_COLUMNS, "rows": list(map(_frame_row, frames))}
    try:
        text = orjson.dumps(frames, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        text = orjson.dumps(_big_ints(frames), option=orjson.OPT_NON_STR_KEYS, default=_default)
    return compress_blob(text)


def load_frames(value: Any) -> Any:
    """A stored frames value (compressed by :func:`dump_frames`, or JSON text as stores written
    before schema 2 hold) decoded into a list of frame dicts; None stays None."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
        if value[:4] == _ZSTD_MAGIC or value[:1] == b"\x78":   # zstd frame / zlib stream
            value = decompress_blob(value)
    out = orjson.loads(value)
    if type(out) is dict and "frame_columns" in out:
        cols = out["frame_columns"]
        return [dict(zip(cols, row)) for row in out.get("rows") or ()]
    return out


def _big_ints(obj: Any) -> Any:
    """``obj`` with dataclasses as dicts and ints beyond 64 bits as text (orjson refuses them)."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, float)):
        return obj
    if isinstance(obj, int):
        return obj if -(2**63) <= obj < 2**64 else str(obj)
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(k): _big_ints(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_big_ints(v) for v in obj]
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _big_ints(getattr(obj, k)) for k in obj.__dataclass_fields__}
    return obj


def jdump(obj: Any) -> str | None:
    if obj is None:
        return None
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS, default=_default).decode()


def jload(text: str | bytes | None) -> Any:
    if text is None:
        return None
    return orjson.loads(text)


def _default(obj: Any):
    if isinstance(obj, int):  # beyond 64 bits: keep exact as text
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


class Store:
    """A connection to one triage store file."""

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self.conn = conn

    @classmethod
    def open(cls, path: Path | str) -> "Store":
        path = Path(path).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{path}: cannot create the store's folder: {exc.strerror or exc}")
        if path.exists() and path.is_dir():
            raise UserError(f"{path}: is a folder, not a store file")
        try:
            conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # new stores only (a no-op once the file exists): incident rows are ~60 KB, and
            # 16 KB pages mean 4x fewer overflow pages per row (~15-20% faster inserts)
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            _retry(lambda: conn.execute("PRAGMA journal_mode=WAL"))
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            store = cls(path, conn)
            store._migrate()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{path}: {_open_problem(path, exc)}")
        return store

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise UserError(f"{self.path}: store was written by a newer triage "
                            f"(schema {version} > {SCHEMA_VERSION})")
        if version == SCHEMA_VERSION:
            return
        # executescript() commits any open transaction first, so the script carries its own
        # BEGIN IMMEDIATE ... COMMIT (every statement is idempotent: concurrent opens are safe)
        script = ("BEGIN IMMEDIATE;\n" + _schema_sql()
                  + f"\nPRAGMA user_version={SCHEMA_VERSION};\nCOMMIT;")
        try:
            _retry(lambda: self.conn.executescript(script))
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any error, including Ctrl-C)."""
        _retry(lambda: self.conn.execute("BEGIN IMMEDIATE"))
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            _retry(lambda: self.conn.execute("COMMIT"))

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        cur = self.conn.execute(sql, params)
        cur.row_factory = sqlite3.Row
        return cur.fetchall()

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else row[0]

    def set_meta(self, key: str, value: str | None) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) "
                          "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_problem(path: Path, exc: Exception) -> str:
    """Why a store could not be opened, in words (permissions first: sqlite only says
    "unable to open database file" / "attempt to write a readonly database")."""
    import os

    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return "cannot open the store: permission denied (the file is not readable and writable)"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return (f"cannot open the store: permission denied (folder {path.parent} is not "
                "writable; the store needs it for its -wal/-shm files)")
    return f"not a usable triage store ({exc})"


def _retry(fn, attempts: int = 200, delay: float = 0.05):
    """Run ``fn`` retrying on SQLITE_BUSY/LOCKED beyond the busy timeout (WAL upgrade races)."""
    for i in range(attempts):
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            msg = str(exc)
            if ("locked" not in msg and "busy" not in msg) or i == attempts - 1:
                raise
            time.sleep(delay)
