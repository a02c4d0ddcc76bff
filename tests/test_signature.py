"""Signature rules (table-driven), message masking, list loading, inline invariance."""
from __future__ import annotations

import pytest

from triage.errors import UserError
from triage.records import Frame, Report, Thread
from triage.signature import (compute_signature, frame_token, load_siglists, mask_message,
                              split_signature_text)

LISTS = load_siglists([])


def F(name, module="X", *, inline=False, offset=None, sym=True):
    """A normalized frame (as triage.frames leaves it)."""
    if not sym:
        return Frame(module=module, offset=offset, normalized=f"{module}+{offset:#x}")
    return Frame(module=module, symbol=name, function=name, normalized=name, inline=inline,
                 offset=offset)


def R(frames, *, exc="EXC_BAD_ACCESS", sig="SIGSEGV", asi=None, leb=None, subtype=None,
      **kw):
    return Report(incident_id="i", path="/p", sha256="s", format="ips-json", kind="crash",
                  exception_type=exc, signal=sig, asi=asi, exception_subtype=subtype,
                  crashing_thread=0, threads=[Thread(index=0, triggered=True, frames=frames)],
                  last_exception_backtrace=leb, **kw)


ASSERT_MSG = ("Assertion failed: (tensor.rank() <= 5), function validateShape, "
              "file /Users/bob/src/ANECValidate.mm, line 412.")

CASES = [
    # (name, report, expected frame part, expected message or None)
    ("mpsgraph ane crash",
     R([F("objc_release", "libobjc.A.dylib"), F("GPU::anePreCompileBinary", "MPSGraph"),
        F("GPU::BaseModuleRef::compileAndLoadANE", "MPSGraph"),
        F("_dispatch_client_callout", "libdispatch.dylib"), F("main", "coreai-build")]),
     "objc_release | GPU::anePreCompileBinary", None),
    ("different bug, same prefix",
     R([F("objc_release", "libobjc.A.dylib"), F("GPU::RegionOps::lowerSliceUpdate", "MPSGraph")]),
     "objc_release | GPU::RegionOps::lowerSliceUpdate", None),
    ("assertion: frames above __assert_rtn dropped, message masked",
     R([F("__pthread_kill"), F("pthread_kill"), F("abort"), F("__assert_rtn"),
        F("ANEC::Validate::validateShape", "ANECompiler"), F("ANECValidate", "ANECompiler")],
       exc="EXC_CRASH", sig="SIGABRT", asi={"libsystem_c.dylib": [ASSERT_MSG]}),
     "ANEC::Validate::validateShape",
     "Assertion failed: (tensor.rank() <= N), function validateShape"),
    ("abort with a message: walk starts at abort (a prefix frame)",
     R([F("__pthread_kill"), F("pthread_kill"), F("abort"), F("my::fatal"), F("caller")],
       exc="EXC_CRASH", sig="SIGABRT", asi={"App": ["fatal: bad state 0x1234 in /tmp/x.bin"]}),
     "abort | my::fatal", "fatal: bad state ADDR in <path>"),
    ("abort without a message: prefix frames kept",
     R([F("__pthread_kill"), F("pthread_kill"), F("abort"), F("my::fatal"), F("caller")],
       exc="EXC_CRASH", sig="SIGABRT"),
     "pthread_kill | abort | my::fatal", None),
    ("signal handler above _sigtramp dropped",
     R([F("__pthread_kill"), F("pthread_kill"), F("abort"), F("CrashHandler::onSignal"),
        F("_sigtramp"), F("Model::load"), F("main")]),
     "Model::load", None),
    ("last exception backtrace is signed",
     R([F("__pthread_kill"), F("pthread_kill"), F("abort"), F("abort_message"),
        F("_objc_terminate"), F("std::__terminate"), F("__cxa_rethrow"), F("caller")],
       exc="EXC_CRASH", sig="SIGABRT",
       leb=[F("__exceptionPreprocess", "CoreFoundation"), F("objc_exception_throw", "libobjc.A.dylib"),
            F("-[MLModel compileModelAtURL:error:]", "CoreML"), F("main")]),
     "-[MLModel compileModelAtURL:error:]", None),
    ("c++ throw in the crashing thread: frames above __cxa_throw dropped",
     R([F("__pthread_kill"), F("pthread_kill"), F("abort"), F("std::__terminate"),
        F("__cxa_throw"), F("MIL::Compiler::lower", "MILCompiler"), F("main")],
       exc="EXC_CRASH", sig="SIGABRT"),
     "MIL::Compiler::lower", None),
    ("irrelevant plumbing skipped",
     R([F("_dispatch_client_callout", "libdispatch.dylib"), F("mach_msg2_trap"),
        F("_pthread_start"), F("Worker::run")]),
     "Worker::run", None),
    ("malloc family is prefix",
     R([F("_xzm_xzone_malloc_tiny", "libsystem_malloc.dylib"),
        F("_malloc_zone_malloc", "libsystem_malloc.dylib"), F("MIL::Rewriter::matchPattern")]),
     "_xzm_xzone_malloc_tiny | _malloc_zone_malloc | MIL::Rewriter::matchPattern", None),
    ("swift trap: _assertionFailure skipped",
     R([F("_assertionFailure(_:_:file:line:flags:)", "libswiftCore.dylib"),
        F("closure in WeightPacker.pack", "coreai-build"), F("main", "coreai-build")],
       exc="EXC_BREAKPOINT", sig="SIGTRAP",
       asi={"libswiftCore.dylib": ["CoreAIBuild/WeightPacker.swift:131: Fatal error: "
                                   "palette index out of range (72 >= 64)"]}),
     "closure in WeightPacker.pack",
     "CoreAIBuild/WeightPacker.swift:N: Fatal error: palette index out of range (N >= N)"),
    ("unsymbolized frames sign as module names (no offsets)",
     R([F(None, "libsystem_kernel.dylib", offset=0x8be8, sym=False),
        F(None, "libobjc.A.dylib", offset=0x1cb3c, sym=False),
        F(None, "MPSGraph", offset=0x251ac4, sym=False)]),
     "libobjc.A.dylib | MPSGraph", None),
    ("stack overflow marked",
     R([F("MIL::Rewriter::visit"), F("walk")] * 300, subtype="KERN_PROTECTION_FAILURE at 0x16f",
       extra={"vm_region_info": "0x16f is in a stack guard region"}),
     "stackoverflow | MIL::Rewriter::visit", None),
]


@pytest.mark.parametrize("name,report,frames,message", CASES, ids=[c[0] for c in CASES])
def test_signature_rules(name, report, frames, message):
    res = compute_signature(report, LISTS)
    assert res.frames_signature == frames
    assert res.message == message
    assert res.signature.startswith(frames)
    assert split_signature_text(res.signature)[0] == frames
    assert res.stack_id and len(res.stack_id) == 16


def test_signature_carries_exception_class_and_message():
    res = compute_signature(CASES[2][1], LISTS)
    assert res.exception == "EXC_CRASH/SIGABRT"
    assert res.signature == ("ANEC::Validate::validateShape [EXC_CRASH/SIGABRT] Assertion failed: "
                             "(tensor.rank() <= N), function validateShape")
    seg = compute_signature(CASES[0][1], LISTS)
    assert seg.signature == "objc_release | GPU::anePreCompileBinary [EXC_BAD_ACCESS/SIGSEGV]"


def test_stack_is_meaningful_frames_top_first():
    res = compute_signature(CASES[0][1], LISTS)
    assert res.stack == ["libobjc.A.dylib!objc_release", "MPSGraph!GPU::anePreCompileBinary",
                         "MPSGraph!GPU::BaseModuleRef::compileAndLoadANE", "coreai-build!main"]
    assert res.proto_signature.startswith("objc_release | GPU::anePreCompileBinary | ")


def test_inline_frame_shapes_give_the_same_result():
    """A build that inlined compileAndLoadANE (inline entry) and one that did not (physical
    frame) sign and hash the same."""
    def frames(inline):
        return [F("objc_release", "libobjc.A.dylib"), F("GPU::anePreCompileBinary", "MPSGraph"),
                F("GPU::BaseModuleRef::compileAndLoadANE", "MPSGraph", inline=inline),
                F("-[MPSGraphExecutable specialize]_block_invoke", "MPSGraph"), F("main")]
    a = compute_signature(R(frames(True)), LISTS)
    b = compute_signature(R(frames(False)), LISTS)
    assert a.signature == b.signature
    assert a.stack_id == b.stack_id


def test_inline_frame_at_the_top_is_signed_consistently():
    a = compute_signature(R([F("Shape::rank", "ANECompiler", inline=True),
                             F("validateShape", "ANECompiler"), F("main")]), LISTS)
    b = compute_signature(R([F("Shape::rank", "ANECompiler"), F("validateShape", "ANECompiler"),
                             F("main")]), LISTS)
    assert a.signature == b.signature == "Shape::rank [EXC_BAD_ACCESS/SIGSEGV]"


def test_recursion_collapsed_in_stack():
    res = compute_signature(R([F("a"), F("b"), F("c")] + [F("rec")] * 50 + [F("main")]), LISTS)
    assert res.stack.count("X!rec") == 1


def test_no_crashing_thread():
    rep = Report(incident_id="i", path="/p", sha256="s", format="ips-json", kind="crash")
    res = compute_signature(rep, LISTS)
    assert res.signature.startswith("EMPTY: no crashing thread identified")
    assert res.stack == []


def test_unsymbolized_token_keeps_offset_and_module():
    assert frame_token(F(None, "MPSGraph", offset=0x10, sym=False)) == "MPSGraph!+0x10"
    assert frame_token(F("GPU::x", "MPSGraph")) == "MPSGraph!GPU::x"


@pytest.mark.parametrize("raw,masked", [
    (ASSERT_MSG, "Assertion failed: (tensor.rank() <= N), function validateShape"),
    ("object 0x600000c04000 of class MPSGraphTensor deallocated twice",
     "object ADDR of class MPSGraphTensor deallocated twice"),
    ("cannot open /Users/alice/models/m.mlpackage: code 17",
     "cannot open <path>: code N"),
    ("model 6F9619FF-8B86-D011-B42D-00C04FC964FF failed at int32 op 12",
     "model UUID failed at int32 op N"),
])
def test_mask_message(raw, masked):
    assert mask_message(raw) == masked


def test_worked_example_from_the_notes_with_frame_normalization():
    """signature-systems.md §1.3: objc_release <- GPU::anePreCompileBinary(...) gives
    `objc_release | GPU::anePreCompileBinary`, arguments removed (frames stage)."""
    normalize = pytest.importorskip("triage.frames.normalize")
    rep = R([Frame(module="libobjc.A.dylib", symbol="objc_release", offset=16),
             Frame(module="MetalPerformanceShadersGraph", offset=99,
                   symbol="GPU::anePreCompileBinary(MPSGraphExecutable*, "
                          "llvm::SmallVectorImpl<char>&)")])
    normalize.normalize_report(rep, normalize.load_rules([]))
    assert compute_signature(rep, LISTS).frames_signature == \
        "objc_release | GPU::anePreCompileBinary"


# ---------------------------------------------------------------------------- list files

def test_user_list_sections_add_and_remove(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text("# my lists\n[prefix]\nGPU::anePreCompileBinary\n[irrelevant]\n!std::__\n")
    lists = load_siglists([f])
    assert "GPU::anePreCompileBinary" in lists.prefix
    assert "std::__" not in lists.irrelevant
    res = compute_signature(CASES[0][1], lists)
    assert res.frames_signature == ("objc_release | GPU::anePreCompileBinary | "
                                    "GPU::BaseModuleRef::compileAndLoadANE")
    assert str(f) in lists.files
    assert lists.version() != LISTS.version()


def test_user_list_by_file_name_and_toml(tmp_path):
    a = tmp_path / "team-irrelevant.txt"
    a.write_text("Worker::run\n")
    b = tmp_path / "rules.toml"
    b.write_text('[siglists]\nsentinel = ["MyCrashHook"]\n[[rule]]\nname = "x"\n')
    c = tmp_path / "notes.md"          # other formats are ignored
    c.write_text("anything")
    lists = load_siglists([a, b, c])
    assert "Worker::run" in lists.irrelevant
    assert "MyCrashHook" in lists.sentinel
    assert str(c) not in lists.files


@pytest.mark.parametrize("text,needle", [
    ("[prefix]\nfoo(\n", "invalid regex"),
    ("[nonsense]\nfoo\n", "unknown signature list"),
    ("foo\n", "before any"),
])
def test_bad_user_list_is_a_user_error(tmp_path, text, needle):
    f = tmp_path / "bad.txt"
    f.write_text(text)
    with pytest.raises(UserError, match=needle) as ei:
        load_siglists([f])
    assert str(f) in str(ei.value)


def test_missing_user_list_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_siglists([tmp_path / "nope.txt"])


def test_message_masks_are_data_users_extend_and_disable(tmp_path):
    """Masks live in siglists/message_masks.toml; a user TOML adds, replaces or disables one."""
    user = tmp_path / "masks.toml"
    user.write_text('[[message_mask]]\nname = "tensor-name"\npattern = "tensor \'[^\']*\'"\n'
                    'replace = "tensor \'<name>\'"\n\n[[message_mask]]\nname = "number"\n'
                    'disable = true\n')
    shipped = load_siglists()
    assert [m[0] for m in shipped.masks][:3] == ["file-line", "uuid", "address"]
    mine = load_siglists([user])
    names = [m[0] for m in mine.masks]
    assert "tensor-name" in names and "number" not in names
    msg = "Assertion failed: tensor 'w_12' rank 5 at 0x1234"
    assert mask_message(msg, mine.masks) == "Assertion failed: tensor '<name>' rank 5 at ADDR"
    assert mask_message(msg, shipped.masks) == "Assertion failed: tensor 'w_12' rank N at ADDR"
    assert mine.version() != shipped.version()


def test_bad_message_mask_is_a_one_line_error(tmp_path):
    import pytest

    from triage.errors import UserError

    bad = tmp_path / "bad.toml"
    bad.write_text('[[message_mask]]\nname = "x"\npattern = "("\n')
    with pytest.raises(UserError, match="bad.toml: message mask 'x': invalid regex"):
        load_siglists([bad])


def test_collapse_recursion_matches_the_plain_definition():
    """The fast collapse (period-1 shortcut, first-element test) equals the definition:
    after each item, drop the newest run of 1..4 items that repeats the run before it."""
    import random

    from triage.signature import _collapse_recursion

    def plain(items, max_period=4):
        out, collapsed = [], False
        for it in items:
            out.append(it)
            for p in range(1, max_period + 1):
                if len(out) >= 2 * p and out[-p:] == out[-2 * p:-p]:
                    del out[-p:]
                    collapsed = True
                    break
        return out, collapsed

    rng = random.Random(7)
    for _ in range(5000):
        items = [rng.choice("abcd") for _ in range(rng.randint(0, 40))]
        assert _collapse_recursion(items) == plain(items), items
    assert _collapse_recursion(["f"] * 600 + ["main"]) == (["f", "main"], True)


def test_memoized_signature_equals_a_fresh_one_and_is_not_shared():
    """compute_signature memoizes per SigLists: a hit must equal a fresh computation for every
    case (including cases that differ only in fields the key must hold), and callers get their
    own lists."""
    warm = load_siglists([])
    reports = [c[1] for c in CASES] * 2 + [
        R([F("a", offset=1, sym=False), F("main")]), R([F("a", offset=2, sym=False), F("main")]),
        R([F("x"), F("main")], asi={"p": ["Assertion failed: (a) x.c line 3."]}, exc="EXC_CRASH",
          sig="SIGABRT"),
        R([F("x"), F("main")], asi={"p": ["Assertion failed: (b) x.c line 3."]}, exc="EXC_CRASH",
          sig="SIGABRT"),
        R([F("x"), F("main")], subtype="stack overflow"), R([F("x"), F("main")]),
        R([F("x"), F("main")], leb=[F("y"), F("main")]),
    ]
    for rep in reports:
        got = compute_signature(rep, warm)
        assert got == compute_signature(rep, load_siglists([]))
        got.notes.append("mutated")
        got.stack.append("mutated")
        assert compute_signature(rep, warm) == compute_signature(rep, load_siglists([]))
    assert len(warm._results) < len(reports)       # hits happened
    sigs = {compute_signature(r, warm).stack_id for r in reports[-7:-3]}
    assert len(sigs) == 4                           # offset / message differences kept apart
