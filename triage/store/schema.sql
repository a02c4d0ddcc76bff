-- triage store schema (SQLite, WAL). Applied by triage.store.db on open; version in PRAGMA user_version.
-- Every statement is idempotent (IF NOT EXISTS) so a newer triage can open an older store and add
-- what is missing. Columns are never renamed; new ones are added with ALTER TABLE in migrations.

-- Files seen by ingest: lets a re-run skip unchanged files by (path, size, mtime) before reading.
CREATE TABLE IF NOT EXISTS files (
    path        TEXT PRIMARY KEY,     -- absolute path; archive members as "/abs/archive.zip!member/path"
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    sha256      TEXT,
    status      TEXT NOT NULL,        -- ingested | duplicate | error | skipped
    incident_id TEXT,
    seen_at     TEXT NOT NULL
);

-- One row per stored report (any kind). Big nested data lives in compressed JSON blobs.
CREATE TABLE IF NOT EXISTS incidents (
    incident_id            TEXT PRIMARY KEY,
    path                   TEXT NOT NULL,
    sha256                 TEXT NOT NULL UNIQUE,
    format                 TEXT,
    bug_type               TEXT,
    kind                   TEXT NOT NULL,
    process                TEXT,
    process_path           TEXT,
    pid                    INTEGER,
    parent_process         TEXT,
    parent_pid             INTEGER,
    responsible_process    TEXT,
    responsible_pid        INTEGER,
    bundle_id              TEXT,
    app_version            TEXT,
    captured_at            TEXT,       -- ISO-8601 with zone, as reported
    captured_ts            REAL,       -- epoch seconds (UTC) for ordering / windows
    launched_at            TEXT,
    os_version             TEXT,
    os_train               TEXT,
    os_build               TEXT,
    os_release_type        TEXT,
    platform               TEXT,
    hardware_model         TEXT,
    cpu_type               TEXT,
    exception_type         TEXT,
    signal                 TEXT,
    exception_codes        TEXT,
    exception_subtype      TEXT,
    exception_message      TEXT,
    termination_namespace  TEXT,
    termination_code       INTEGER,
    termination_indicator  TEXT,
    termination_by_process TEXT,
    termination_by_pid     INTEGER,
    crash_reporter_key     TEXT,
    asi                    TEXT,       -- JSON object
    crashing_thread        INTEGER,
    frames                 TEXT,       -- crashing thread frames (enriched by triage.frames): zstd JSON
                                       -- array (db.dump_frames; plain JSON text in older rows)
    last_exception         TEXT,       -- same encoding, or NULL
    detail                 BLOB,       -- zstd(orjson): header, extra, notes (+ threads, images for text
                                       -- reports; JSON reports' threads come from originals)
    signature              TEXT,       -- filled for crashes by triage.signature
    proto_signature        TEXT,
    stack_id               TEXT,       -- hash of the normalized stack used for clustering
    cluster_id             TEXT,       -- current cluster (after overrides)
    compile_id             INTEGER,    -- linked compile record (compiles.id) or NULL
    link_note              TEXT,       -- why not linked / ambiguity
    needs_symbols          INTEGER NOT NULL DEFAULT 0,  -- 1: has unsymbolicated frames of a known image
    ingested_at            TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_kind ON incidents(kind);
CREATE INDEX IF NOT EXISTS incidents_cluster ON incidents(cluster_id, captured_ts);
CREATE INDEX IF NOT EXISTS incidents_build ON incidents(os_build);
CREATE INDEX IF NOT EXISTS incidents_captured ON incidents(captured_ts);
CREATE INDEX IF NOT EXISTS incidents_stack ON incidents(stack_id);
CREATE INDEX IF NOT EXISTS incidents_proc_pid ON incidents(process, pid);
CREATE INDEX IF NOT EXISTS incidents_needs_symbols ON incidents(needs_symbols) WHERE needs_symbols = 1;

-- The report file's own bytes (zstd), for every report (`triage original`). Reports ingest
-- parsed lazily (JSON .ips) have no threads or images in their detail blob:
-- triage.frames.stored parses those from here when a stored report is read. Kept apart from incidents so rewriting an incident row (peer symbols,
-- clustering, linking) never copies the blob, and scans of incidents stay small.
CREATE TABLE IF NOT EXISTS originals (
    incident_id TEXT PRIMARY KEY,
    data        BLOB NOT NULL
);

-- Bad input, one row per file and reason (latest wins).
CREATE TABLE IF NOT EXISTS errors (
    path     TEXT PRIMARY KEY,
    reason   TEXT NOT NULL,
    seen_at  TEXT NOT NULL
);

-- Distinct normalized stacks: clustering cost is driven by these, not by reports.
CREATE TABLE IF NOT EXISTS stacks (
    stack_id        TEXT PRIMARY KEY,
    signature       TEXT NOT NULL,
    proto_signature TEXT NOT NULL,
    frames          TEXT NOT NULL,     -- JSON array of normalized frames used for similarity
    cluster_id      TEXT,
    count           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS stacks_cluster ON stacks(cluster_id);
CREATE INDEX IF NOT EXISTS stacks_signature ON stacks(signature);

-- Clusters: ids are permanent. merged_into points a retired id at its successor.
CREATE TABLE IF NOT EXISTS clusters (
    cluster_id   TEXT PRIMARY KEY,
    signature    TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    merged_into  TEXT,
    note         TEXT
);

-- User overrides (merge / split), replayed by ingest and recluster.
CREATE TABLE IF NOT EXISTS cluster_overrides (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    action      TEXT NOT NULL,         -- merge | split
    cluster_id  TEXT NOT NULL,
    other_id    TEXT,                  -- merge target
    selector    TEXT,                  -- split: JSON {"signature": ...} or {"incidents": [...]}
    new_id      TEXT,                  -- split: the id of the new cluster
    created_at  TEXT NOT NULL
);

-- Compile journal records (triage.context). One row per compile; raw keeps the record verbatim.
CREATE TABLE IF NOT EXISTS compiles (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    record_key  TEXT NOT NULL UNIQUE,  -- sha256 of the canonical record (idempotent journal reads)
    source      TEXT,                  -- journal path or sidecar path
    pid         INTEGER,
    process     TEXT,
    started_ts  REAL,
    ended_ts    REAL,
    exit_code   INTEGER,
    model       TEXT,
    config      TEXT,                  -- JSON: flattened configuration used for correlations
    raw         TEXT NOT NULL          -- JSON: the record as recorded
);
CREATE INDEX IF NOT EXISTS compiles_pid ON compiles(pid, started_ts);

-- Release aliases (beta5 -> 26A5353q), optionally per platform ("" = any).
CREATE TABLE IF NOT EXISTS aliases (
    alias     TEXT NOT NULL,
    platform  TEXT NOT NULL DEFAULT '',
    build     TEXT NOT NULL,
    PRIMARY KEY (alias, platform)
);

-- Where a cluster was filed in a tracker, and what the last export told it.
CREATE TABLE IF NOT EXISTS filed (
    cluster_id   TEXT PRIMARY KEY,
    url          TEXT NOT NULL,
    filed_at     TEXT NOT NULL,
    snapshot     TEXT                  -- JSON: counts/builds/configs at the last export
);

-- Free-form key/value settings and bookkeeping (rules version, etc.).
CREATE TABLE IF NOT EXISTS meta (
    key    TEXT PRIMARY KEY,
    value  TEXT
);

-- Added by the frames engineer (issue 3, triage/frames/symbolize.py PeerSymbols):
-- function starts learned from symbolicated frames, per image UUID, used to name unsymbolicated
-- frames of the same image (same OS build). PeerSymbols also creates it on stores made earlier.
CREATE TABLE IF NOT EXISTS symbol_map (
    image_uuid TEXT NOT NULL,
    start      INTEGER NOT NULL,     -- imageOffset - symbolLocation
    end_seen   INTEGER NOT NULL,     -- largest imageOffset seen inside this function
    symbol     TEXT NOT NULL,
    PRIMARY KEY (image_uuid, start)
);

-- Report indexes (triage.report, issue 6): `triage report` groups crashes by cluster, build,
-- platform, process and hardware in index order from one covering index (no table lookups, no
-- sort), and reads linked compiles from a small partial index. triage.report.build creates them
-- too on stores made before they were added here.
CREATE INDEX IF NOT EXISTS incidents_report ON incidents(kind, cluster_id, os_build, platform, process, hardware_model, captured_ts, incident_id);
CREATE INDEX IF NOT EXISTS incidents_compile ON incidents(kind, cluster_id, compile_id, os_build) WHERE compile_id IS NOT NULL;
