"""Table-driven tests of every shipped frame normalization rule (triage/frames/rules/*.toml)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from triage.errors import UserError
from triage.frames.normalize import (MAX_SYMBOL_CHARS, collapse_runs, load_rules, normalize_frame,
                                     normalize_report, normalize_symbol, normalized_stack)
from triage.records import Frame, Report, Thread

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


@pytest.fixture(scope="module")
def rules():
    return load_rules([])


# (raw symbol, normalized, a rule that must have fired or None)
CASES = [
    # --- C++ (ML compiler frames)
    ("mlir::detail::OpToOpPassAdaptor::run(mlir::Pass*, mlir::Operation*, mlir::AnalysisManager, "
     "bool, unsigned int)", "mlir::detail::OpToOpPassAdaptor::run", "cxx-strip-args"),
    ("__ZN4mlir6detail17OpToOpPassAdaptor3runEPNS_4PassEPNS_9OperationENS_15AnalysisManagerEbj",
     "mlir::detail::OpToOpPassAdaptor::run", "demangle"),
    ("_ZN4mlir6detail17OpToOpPassAdaptor3runEPNS_4PassEPNS_9OperationENS_15AnalysisManagerEbj",
     "mlir::detail::OpToOpPassAdaptor::run", "demangle"),
    ("void mlir::detail::walk<(mlir::ForwardIterator)1>(mlir::Operation*, "
     "llvm::function_ref<void (mlir::Operation*)>, mlir::WalkOrder)",
     "mlir::detail::walk<T>", "cxx-strip-return-type"),
    ("std::__terminate(void (*)())", "std::__terminate", "cxx-strip-args"),
    ("AG::Graph::update_attribute(AG::data::ptr<AG::Node>, unsigned int)",
     "AG::Graph::update_attribute", "cxx-strip-args"),
    ("MIL::ValueType::~ValueType()", "MIL::ValueType::~ValueType", "cxx-strip-args"),
    ("__ZN3MIL9ValueTypeD1Ev", "MIL::ValueType::~ValueType", "demangle"),
    ("std::__1::vector<int, std::__1::allocator<int>>::__throw_length_error[abi:v160006]() const",
     "std::__1::vector<T>::__throw_length_error", "cxx-abi-tag"),
    ("Espresso::ANECompilerEngine::compiler::compile() const &",
     "Espresso::ANECompilerEngine::compiler::compile", "cxx-strip-args"),
    ("foo::bar() &&", "foo::bar", "cxx-strip-args"),
    ("foo::bar() [clone .cold.1]", "foo::bar", "cxx-clone-suffix"),
    ("sigabrt_signal_handler.cold.1", "sigabrt_signal_handler", "cold-suffix"),
    ("_dispatch_queue_override_invoke.cold.3", "_dispatch_queue_override_invoke", "cold-suffix"),
    ("(anonymous namespace)::ConvertPass::runOnOperation()",
     "(anonymous namespace)::ConvertPass::runOnOperation", "cxx-strip-args"),
    ("`anonymous namespace'::ConvertPass::runOnOperation()",
     "(anonymous namespace)::ConvertPass::runOnOperation", "cxx-anonymous-namespace"),
    ("{anonymous}::ConvertPass::runOnOperation()",
     "(anonymous namespace)::ConvertPass::runOnOperation", "cxx-anonymous-namespace"),
    ("main::$_0::operator()() const", "main::$_::operator()", "cxx-lambda-clang"),
    ("foo(int)::$_13::operator()(float) const &", "foo::$_::operator()", "cxx-lambda-clang"),
    ("Foo::bar()::{lambda(int)#2}::operator()(int) const", "Foo::bar::{lambda}::operator()",
     "cxx-lambda-gcc"),
    ("Foo::bar()::'lambda0'(int)::operator()(int) const", "Foo::bar::'lambda'::operator()",
     "cxx-lambda-quoted"),
    ("bool operator<<(std::ostream&, Foo const&)", "operator<<", "cxx-strip-return-type"),
    ("bool mlir::operator<(mlir::Value, mlir::Value)", "mlir::operator<", "cxx-strip-args"),
    ("std::__1::basic_ostream<char, std::__1::char_traits<char>>& std::__1::operator<<"
     "<std::__1::char_traits<char>>(std::__1::basic_ostream<char, std::__1::char_traits<char>>&, "
     "char const*)", "std::__1::operator<<<T>", "cxx-collapse-templates"),
    ("void* operator new(unsigned long)", "operator new", "cxx-strip-return-type"),
    ("non-virtual thunk to Foo::bar()", "Foo::bar", "cxx-strip-return-type"),
    ("std::__1::function<void ()>::operator()() const", "std::__1::function<T>::operator()",
     "cxx-collapse-templates"),
    ("mlir::Foo::bar(std::vector<int, std::alloc", "mlir::Foo::bar", "cxx-strip-args"),  # cut at 100
    ("CorUnix::InternalWaitForMultipleObjectsEx(CorUnix::CPalThread*, unsigned int, void* const*, "
     "int, unsigned int, int, int)", "CorUnix::InternalWaitForMultipleObjectsEx", "cxx-strip-args"),
    ("_ZL12RunWebThreadPv", "RunWebThread", "demangle"),
    # --- Objective-C: kept whole, categories kept
    ("-[NSRunLoop(NSRunLoop) runMode:beforeDate:]", "-[NSRunLoop(NSRunLoop) runMode:beforeDate:]",
     None),
    ("+[BSAnimationSettings(UIKit) tryAnimatingWithSettings:actions:completion:]",
     "+[BSAnimationSettings(UIKit) tryAnimatingWithSettings:actions:completion:]", None),
    ("-[MPSGraphExecutable runWithMTLCommandQueue:inputsArray:resultsArray:executionDescriptor:]",
     "-[MPSGraphExecutable runWithMTLCommandQueue:inputsArray:resultsArray:executionDescriptor:]",
     None),
    ("-[NSRunLoop+ 30836 (NSRunLoop) runUntilDate:]", "-[NSRunLoop(NSRunLoop) runUntilDate:]",
     "strip-spliced-offset"),
    ("objc_msgSend$objectForKeyedSubscript:", "objc_msgSend$objectForKeyedSubscript:", None),
    ("-[MLModel(MLModelCompilation) compileModelAtURL:error:].cold.1",
     "-[MLModel(MLModelCompilation) compileModelAtURL:error:]", "cold-suffix"),
    ("__40-[ANEClient compileModel:options:]_block_invoke.cold.1",
     "-[ANEClient compileModel:options:]_block_invoke", "cold-suffix"),
    # --- blocks
    ("__89-[MPSGraphExecutable specializeWithDevice:inputTypes:compilationDescriptor:]_block_invoke",
     "-[MPSGraphExecutable specializeWithDevice:inputTypes:compilationDescriptor:]_block_invoke",
     "block-length-prefix"),
    ("__91-[MPSGraphExecutable specializeWithDevice:inputTypes:compilationDescriptor:]_block_invoke",
     "-[MPSGraphExecutable specializeWithDevice:inputTypes:compilationDescriptor:]_block_invoke",
     "block-length-prefix"),
    ("__91-[MPSGraphExecutable specializeWithDevice:inputTypes:compilationDescriptor:]"
     "_block_invoke_2",
     "-[MPSGraphExecutable specializeWithDevice:inputTypes:compilationDescriptor:]_block_invoke_2",
     "block-length-prefix"),
    ("__64-[UIScene scene:didUpdateWithDiff:transitionContext:completion:]_block_invoke.615",
     "-[UIScene scene:didUpdateWithDiff:transitionContext:completion:]_block_invoke",
     "block-dot-suffix"),
    ("__32-[AppDelegate(UI) crashCommands]_block_invoke367",
     "-[AppDelegate(UI) crashCommands]_block_invoke", "block-glued-number"),
    ("___AXSharedDisplayManager_block_invoke_2", "AXSharedDisplayManager_block_invoke_2",
     "block-c-function-prefix"),
    ("__AXImageMonitor_dyld_image_callback_block_invoke",
     "AXImageMonitor_dyld_image_callback_block_invoke", "block-c-function-prefix"),
    ("___ZN3foo3barEv_block_invoke", "foo::bar_block_invoke", "block-cxx-invocation"),
    # --- Swift
    ("specialized closure #2 in PlatformItemList.containerSelectionBehavior.getter",
     "closure in PlatformItemList.containerSelectionBehavior.getter", "swift-specialized"),
    ("merged Foo.bar(_:)", "Foo.bar", "swift-specialized"),
    ("partial apply for specialized Foo.bar(_:)", "Foo.bar", "swift-specialized-again"),
    ("generic specialization <Swift.Int> of Foo.bar<A>(_:)", "Foo.bar<T>", "swift-specialized"),
    ("partial apply for implicit closure #2 in implicit closure #1 in "
     "DefaultListButtonStyle.ListButton.body.getter",
     "implicit closure in implicit closure in DefaultListButtonStyle.ListButton.body.getter",
     "swift-partial-apply"),
    ("partial apply for closure #3 in Compiler.compile(model:options:)",
     "closure in Compiler.compile", "swift-closure-number"),
    ("(1) suspend resume partial function for closure #1 in CoreAIBuild.CompileCommand.run()",
     "closure in CoreAIBuild.CompileCommand.run", "swift-async-resume"),
    ("(2) await resume partial function for CoreAIBuild.Compiler.compile(model:options:)",
     "CoreAIBuild.Compiler.compile", "swift-async-resume"),
    ("thunk for @escaping @callee_guaranteed () -> ()", "thunk", "swift-thunk"),
    ("thunk for @escaping @callee_guaranteed () -> ()partial apply", "thunk", "swift-thunk"),
    ("partial apply for thunk for @escaping @callee_guaranteed () -> ()", "thunk", "swift-thunk"),
    ("reabstraction thunk helper from @escaping @callee_guaranteed () -> () to "
     "@escaping @callee_unowned @convention(block) () -> ()", "thunk", "swift-thunk"),
    ("@objc ViewController.buttonTapped(_:)", "ViewController.buttonTapped", "swift-objc-thunk"),
    ("runApp<A>(_:)", "runApp<T>", "swift-generic-args"),
    ("static App.main()", "static App.main", "swift-strip-args"),
    ("closure #1 in KitRendererCommon(_:)", "closure in KitRendererCommon", "swift-closure-number"),
    # Swift runtime traps
    ("_assertionFailure(_:_:file:line:flags:)", "_assertionFailure", "swift-strip-args"),
    ("specialized _fatalErrorMessage+ 2378352 (_:_:file:line:flags:)", "_fatalErrorMessage",
     "strip-spliced-offset"),
    ("_assertionFailure+ 169548 (_:_:file:line:flags:)", "_assertionFailure",
     "strip-spliced-offset"),
    ("Swift runtime failure: Unexpectedly found nil while unwrapping an Optional value",
     "Swift runtime failure: Unexpectedly found nil while unwrapping an Optional value", None),
    ("Swift runtime failure: Index out of range", "Swift runtime failure: Index out of range",
     None),
    ("$s7SwiftUI4ViewPAAE5frameyQrSi_SitF", "View.frame", "demangle"),
    ("_$s7SwiftUI4ViewPAAE5frameyQrSi_SitF", "View.frame", "demangle"),
    ("_T0s6UInt32VABSicfC", "UInt32.init", "demangle"),
    ("Compiler.compile(model: Model) throws -> Program", "Compiler.compile", "swift-strip-return"),
    ("protocol witness for static Equatable.== infix(_:_:) in conformance Foo",
     "protocol witness for static Equatable.== infix in conformance Foo", "swift-strip-args"),
    # --- every class
    ("foo (in Binary)", "foo", "strip-in-module"),
    ("Line.updateRectForExistingPoint(_:) (in TouchCanvas)", "Line.updateRectForExistingPoint",
     "strip-in-module"),
    ("start", "start", None),
    ("-[Foo  bar:]  ", "-[Foo bar:]", "squash-whitespace"),
    ("deadbeef", "deadbeef", None),
]


@pytest.mark.parametrize("raw,expected,rule", CASES, ids=[c[0][:50] for c in CASES])
def test_rule_table(rules, raw, expected, rule):
    norm, names = normalize_symbol(raw, rules)
    assert norm == expected
    if rule is not None:
        assert rule in names


def test_every_shipped_rule_is_exercised(rules):
    fired = set()
    for raw, _, _ in CASES:
        fired.update(normalize_symbol(raw, rules)[1])
    from triage.frames.normalize import PER_FRAME_BUILTINS

    # per-frame steps need the image name: test_swift_module_prefix exercises them
    unused = {r.name for r in rules.rules if r.builtin not in PER_FRAME_BUILTINS} - fired
    assert not unused, f"shipped rules without a test case: {sorted(unused)}"


def test_block_numbers_unify(rules):
    a = normalize_symbol("__89-[MPSGraphExecutable specializeWithDevice:]_block_invoke", rules)[0]
    b = normalize_symbol("__91-[MPSGraphExecutable specializeWithDevice:]_block_invoke.246",
                         rules)[0]
    assert a == b == "-[MPSGraphExecutable specializeWithDevice:]_block_invoke"


def test_swift_module_prefix(rules):
    """Newer reports qualify Swift names with the module; dSYM demangling does not."""
    def n(sym, module):
        return normalize_frame(Frame(module=module, symbol=sym), rules)

    a = n("closure #1 in ChatPlayground.ModelStore.prepare()", "ChatPlayground")
    b = n("closure #1 () in ModelStore.prepare()", "ChatPlayground")  # symbolic's spelling
    assert a.normalized == b.normalized == "closure in ModelStore.prepare"
    assert a.rule.endswith("swift-module-prefix")
    assert n("ChatPlayground.ModelStore.load(_:)", "ChatPlayground").normalized == \
        "ModelStore.load"

    assert n("CoreAIBuild.Compiler.compile(model:options:)", "CoreAIBuild").normalized == \
        "Compiler.compile"
    # never for C++ / ObjC / non-identifier images, nor inside another name
    assert n("GPU::Foo.bar()", "GPU").normalized == "GPU::Foo.bar"
    assert n("-[GPU. x]", "GPU").normalized == "-[GPU. x]"
    assert n("libswiftCore.dylib.foo()", "libswiftCore.dylib").normalized == \
        "libswiftCore.dylib.foo"
    assert n("MyGPU.run()", "GPU").normalized == "MyGPU.run"


def test_report_and_dsym_spellings_agree(rules):
    # what a report says vs what a dSYM demangles to
    assert normalize_symbol("static App.main()", rules)[0] == \
        normalize_symbol("static App.main() -> ()", rules)[0]
    assert normalize_symbol("demo::twice<long>(long)", rules)[0] == \
        normalize_symbol("long demo::twice<long>(long)", rules)[0] == "demo::twice<T>"


# ---------------------------------------------------------------------------- frames

def test_unsymbolicated_forms(rules):
    f = normalize_frame(Frame(module="libBNNS.dylib", offset=0x1234), rules)
    assert (f.function, f.normalized, f.rule) == (None, "libBNNS.dylib+0x1234", "unsymbolicated")
    f = normalize_frame(Frame(module="SwiftUI", offset=0x1234, symbol_offset=0x34), rules)
    assert f.normalized == "SwiftUI+0x1200"
    assert f.rule == "unsymbolicated-function-start"
    f = normalize_frame(Frame(module=None, offset=0x10), rules)
    assert f.normalized == "???+0x10"
    f = normalize_frame(Frame(module="X", address=0x1010, image_base=0x1000), rules)
    assert f.normalized == "X+0x10"
    f = normalize_frame(Frame(), rules)
    assert f.normalized == "???"
    for placeholder in ("???", "<redacted>", "<deduplicated_symbol>", "0x1022c0000"):
        f = normalize_frame(Frame(module="M", symbol=placeholder, offset=16), rules)
        assert f.normalized == "M+0x10", placeholder


def test_function_is_readable(rules):
    f = normalize_frame(Frame(module="m", symbol="__ZN3MIL9ValueTypeD1Ev (in libmil.dylib)"), rules)
    # " (in X)" after a mangled name: not mangled as a whole, still cleaned
    assert f.normalized
    f = normalize_frame(Frame(module="m", symbol="_ZN3MIL9ValueTypeD1Ev"), rules)
    assert f.function == "MIL::ValueType::~ValueType()"
    assert f.normalized == "MIL::ValueType::~ValueType"
    assert f.rule == "demangle,cxx-strip-args"


def test_normalize_report_fills_all_threads_and_last_exception(rules):
    r = Report(incident_id="i", path="p", sha256="s", format="ips-json",
               threads=[Thread(index=0, frames=[Frame(module="a", symbol="f(int)")]),
                        Thread(index=1, frames=[Frame(module="b", offset=4)])],
               last_exception_backtrace=[Frame(module="c", symbol="-[A b]")])
    normalize_report(r, rules)
    assert [f.normalized for t in r.threads for f in t.frames] == ["f", "b+0x4"]
    assert r.last_exception_backtrace[0].normalized == "-[A b]"


# ---------------------------------------------------------------------------- stacks

def test_recursion_collapsed_and_counted(rules):
    frames = [Frame(module="m", symbol="mlir::Operation::walk(x)") for _ in range(512)]
    frames = [Frame(module="m", symbol="abort")] + frames + [Frame(module="m", symbol="main")]
    assert normalized_stack(frames, rules) == ["abort", "mlir::Operation::walk [x100+]", "main"]
    assert normalized_stack(frames, rules, exact_counts=True)[1] == "mlir::Operation::walk [x512]"
    assert collapse_runs(["a", "a", "b"]) == ["a [x2]", "b"]
    assert collapse_runs(["a"] * 12) == ["a [x10+]"]
    assert normalized_stack(frames, rules, max_frames=2) == ["abort",
                                                             "mlir::Operation::walk [x100+]"]


def test_inline_shape_does_not_change_stack(rules):
    inlined = [Frame(module="m", symbol="inner(int)", inline=True, offset=8),
               Frame(module="m", symbol="outer(int)", offset=8)]
    not_inlined = [Frame(module="m", symbol="inner(int)", offset=4),
                   Frame(module="m", symbol="outer(int)", offset=8)]
    assert normalized_stack(inlined, rules) == normalized_stack(not_inlined, rules) == \
        ["inner", "outer"]
    assert normalized_stack(inlined, rules, drop_inline=True) == ["outer"]


# ---------------------------------------------------------------------------- user rules

def test_user_rule_file_extends_without_code(tmp_path, rules):
    user = tmp_path / "my.toml"
    user.write_text(
        '# my rules\n'
        '[[rule]]\nname = "strip-mps-version"\nmatch = \'_v\\d+$\'\nreplace = ""\n'
        'before = "squash-whitespace"\n\n'
        '[[rule]]\nname = "swift-thunk"\nmatch = "^thunk for .*$"\nreplace = "THUNK"\n'
        'classes = ["swift"]\n\n'
        '[[rule]]\nname = "cxx-strip-return-type"\ndisable = true\n\n'
        '[siglists]\nprefix = ["foo"]\n', encoding="utf-8")
    assert normalize_symbol("MPSKernel_v3", rules)[0] == "MPSKernel_v3"
    mine = load_rules([user])
    assert normalize_symbol("MPSKernel_v3", mine) == ("MPSKernel", ["strip-mps-version"])
    assert normalize_symbol("thunk for @escaping @callee_guaranteed () -> ()", mine)[0] == "THUNK"
    assert normalize_symbol("void foo::bar(int)", mine)[0] == "void foo::bar"
    assert mine.by_name("cxx-strip-return-type") is None
    assert mine.fingerprint != rules.fingerprint
    # siglist text files are left to the signature stage
    other = tmp_path / "prefix.txt"
    other.write_text("foo\n", encoding="utf-8")
    assert load_rules([other]).fingerprint == rules.fingerprint


@pytest.mark.parametrize("body,line,needle", [
    ('[[rule]]\nname = "x"\nmatch = "("\n', 1, "bad regex"),
    ('# c\n\n[[rule]]\nname = "x"\nbuiltin = "nope"\n', 3, "unknown builtin"),
    ('[[rule]]\nname = "ok"\nmatch = "a"\n[[rule]]\nmatch = "b"\n', 4, "needs a name"),
    ('[[rule]]\nname = "x"\nmatch = "a"\nbuiltin = "squash-whitespace"\n', 1, "exactly one"),
    ('[[rule]]\nname = "x"\nmatch = "a"\nclasses = ["rust"]\n', 1, "classes"),
    ('[[rule]]\nname = "x"\nmatch = "a"\nreplace = "\\\\9"\n', 1, "bad regex"),
    ('[[rule]]\nname = "x"\nmatch = "a"\nfoo = 1\n', 1, "unknown rule key"),
    ('[[rule]]\nname = "nothere"\ndisable = true\n', 1, "no rule named"),
    ('[[rule]]\nname = "x"\nmatch = "a"\nafter = "nothere"\n', 1, "no rule named"),
    ('a = 1\n[[rule]\nname = "x"\n', 2, "not a valid TOML"),
])
def test_bad_user_file_names_file_and_line(tmp_path, body, line, needle):
    p = tmp_path / "bad.toml"
    p.write_text(body, encoding="utf-8")
    with pytest.raises(UserError) as exc:
        load_rules([p])
    msg = str(exc.value)
    assert msg.startswith(f"{p}:{line}:"), msg
    assert needle in msg


def test_missing_user_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_rules([tmp_path / "nope.toml"])


# ---------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("raw", [
    "_Zgarbage", "__Z", "$sXYZ!!", "_T0", "_$s" + "A" * 5000,
    "x" * 100_000, "_ZN" + "3foo" * 30_000 + "Ev", "f(" * 50_000, "<" * 10_000 + "a",
    "foo\x00\x01\x02bar\x7f\ufffd", "\x00\x00\x00", "\u00e9t\u00e9::caf\u00e9()",
    "(((((", ")))))", "operator", "::", "-[", "__1-[", "<T>", "'lambda'", "''''",
])
def test_never_raises_and_is_bounded(rules, raw):
    norm, names = normalize_symbol(raw, rules)
    assert norm is None or (isinstance(norm, str) and len(norm) <= MAX_SYMBOL_CHARS)
    if norm is not None:
        assert not any(ord(c) < 32 for c in norm)
    f = normalize_frame(Frame(module="m", symbol=raw, offset=1), rules)
    assert f.normalized


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:
    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=300))
    def test_any_text_never_raises(text):
        rules = load_rules([])
        norm, names = normalize_symbol(text, rules)
        assert norm is None or (norm and len(norm) <= MAX_SYMBOL_CHARS)
        f = normalize_frame(Frame(module="m", symbol=text, offset=3), rules)
        assert f.normalized


def test_junk_removed_and_reported(rules):
    norm, names = normalize_symbol("foo\x00\x01bar", rules)
    assert norm == "foobar" and "sanitize" in names
    norm, names = normalize_symbol("a" * 5000, rules)
    assert len(norm) == MAX_SYMBOL_CHARS and "truncate" in names


def test_memoized(rules):
    rules.process("memo::test(int)")
    before = rules._cache.cache_info().hits
    rules.process("memo::test(int)")
    assert rules._cache.cache_info().hits == before + 1


# ---------------------------------------------------------------------------- real reports

def _corpus_reports():
    if not CORPUS.is_dir():
        return []
    from triage.reports.detect import parse_bytes

    out = []
    for p in sorted(CORPUS.iterdir()):
        if p.suffix not in (".ips", ".crash", ".txt"):
            continue
        data = p.read_bytes()
        try:
            out.append(parse_bytes(data, str(p), hashlib.sha256(data).hexdigest()))
        except Exception:  # noqa: BLE001 - parser coverage is tested elsewhere
            continue
    return out


def test_corpus_every_frame_normalized(rules):
    reports = _corpus_reports()
    if not reports:
        pytest.skip(f"shared corpus not found at {CORPUS}")
    n = 0
    for r in reports:
        normalize_report(r, rules)
        for t in r.threads:
            for f in t.frames:
                n += 1
                assert f.normalized, (r.path, f)
                assert "(" not in f.normalized or f.normalized.startswith(("-[", "+[")) \
                    or "(anonymous namespace)" in f.normalized \
                    or "operator()" in f.normalized \
                    or f.normalized.startswith("Swift runtime failure"), (r.path, f.normalized)
                assert not f.normalized.startswith("__") or "_block_invoke" not in f.normalized
    assert n > 500


def test_swift_module_prefix_is_a_rule_users_can_disable(tmp_path):
    from triage.frames.normalize import load_rules

    off = tmp_path / "off.toml"
    off.write_text('[[rule]]\nname = "swift-module-prefix"\ndisable = true\n')
    f = normalize_frame(Frame(module="ChatPlayground", symbol="ChatPlayground.ModelStore.load(_:)"),
                        load_rules([off]))
    assert f.normalized == "ChatPlayground.ModelStore.load"
    assert "swift-module-prefix" not in (f.rule or "")
