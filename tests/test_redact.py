"""Redaction patterns: home folders, user names, host names, serial numbers, crash reporter keys."""

from __future__ import annotations

from triage.report.redact import Redactor, name_variants, redactor_for, user_names_in
from triage.report.synth import open_store


def test_home_folders_and_names():
    r = Redactor()
    text = ("cwd /Users/alice.kim/Developer/x and /home/bob/src, ~carol/models/m.mlpackage; "
            "bundle com.alicekim.App by Alice Kim")
    out = r(text)
    assert "/Users/USER/Developer/x" in out and "/home/USER/src" in out and "~USER/models" in out
    low = out.lower()
    for leaked in ("alice", "kim", "bob", "carol", "alicekim"):
        assert leaked not in low, leaked
    assert "/Users/Shared/" in r("/Users/Shared/x")        # not a user


def test_hosts_serials_and_keys():
    r = Redactor()
    out = r('Hostname: Janes-MacBook-Pro\n"host": "build-7"\nrunning on jane-mbp.local\n'
            'Serial Number: C02XK1ABJGH5\n"serialNumber":"FVFXC2ABQ6L4"\n'
            '"crashReporterKey" : "141577FE-9E24-345E-8D07-5A82E24C17F9"\n'
            'CrashReporter Key:   616ef33764d9a3eaeec2502dea32442807c62552')
    for leaked in ("Janes-MacBook-Pro", "build-7", "jane-mbp", "C02XK1ABJGH5", "FVFXC2ABQ6L4",
                   "141577FE", "616ef337"):
        assert leaked not in out, leaked
    assert "HOST.local" in out and out.count("<redacted>") == 4


def test_learned_names_hosts_and_secrets_apply_everywhere():
    r = Redactor().learn(['{"host": "carol-mbp-m4", "user": "carol.diaz"}'])
    r.secrets.add("9401DCAA-4A3C-3A4B-8F35-2D9D8D0F012D")
    out = r("coreai-build crash report carol-mbp-m4.txt, Diaz, key "
            "9401DCAA-4A3C-3A4B-8F35-2D9D8D0F012D")
    assert "carol" not in out.lower() and "diaz" not in out.lower() and "9401DCAA" not in out


def test_disabled_keeps_everything():
    text = "/Users/alice/x Serial Number: C02XK1ABJGH5"
    assert Redactor(enabled=False)(text) == text


def test_helpers():
    assert user_names_in("/Users/a.b/x /Users/Shared/y /home/zed/q") == {"a.b", "zed"}
    assert name_variants("alice.kim") == {"alice.kim", "alicekim", "alice", "kim"}


def test_redactor_for_store(tmp_path):
    s = open_store(tmp_path / "t.db")
    with s.transaction() as c:
        c.execute("INSERT INTO incidents(incident_id, path, sha256, kind, process_path, "
                  "crash_reporter_key, ingested_at) VALUES('i', '/r/i.ips', 'h', 'crash', "
                  "'/Users/dana/bin/tool', 'ABCDEF01-2345', 'now')")
        c.execute("INSERT INTO compiles(record_key, raw) VALUES('k', ?)",
                  ('{"host": "danas-box", "user": "dana"}',))
    r = redactor_for(s)
    out = r("dana ran on danas-box with key ABCDEF01-2345")
    assert "dana" not in out.lower() and "ABCDEF01" not in out
