"""triage.frames.demangle: C++ (Itanium, Mach-O), Swift, and names that must pass through."""
from __future__ import annotations

import pytest

from triage.frames.demangle import demangle, looks_mangled

CASES = [
    ("_ZN4mlir6detail17OpToOpPassAdaptor3runEPNS_4PassEPNS_9OperationENS_15AnalysisManagerEbj",
     "mlir::detail::OpToOpPassAdaptor::run(mlir::Pass*, mlir::Operation*, mlir::AnalysisManager, "
     "bool, unsigned int)"),
    ("__ZN3MIL9ValueTypeD1Ev", "MIL::ValueType::~ValueType()"),
    ("___ZN3foo3barEv_block_invoke", "invocation function for block in foo::bar()"),
    ("$s10Foundation4DataV15_RepresentationOWOe", "outlined consume of Data._Representation"),
    ("_$s7SwiftUI4ViewPAAE5frameyQrSi_SitF", "View.frame(Int, Int)"),
    ("_T0s6UInt32VABSicfC", "UInt32.init(Int)"),
]


@pytest.mark.parametrize("mangled,expected", CASES)
def test_demangles(mangled, expected):
    assert looks_mangled(mangled)
    assert demangle(mangled) == expected


@pytest.mark.parametrize("name", [
    "-[NSObject doesNotRecognizeSelector:]", "main", "_dispatch_client_callout",
    "mlir::Pass::run()", "Zebra", "_Zgarbage!", "$sNOTSWIFT", "_T0", "", "__Z",
    "$s" + "A" * 20000,
])
def test_passes_through_what_it_cannot_demangle(name):
    out = demangle(name)
    assert isinstance(out, str)
    if not looks_mangled(name):
        assert out == name


def test_non_string_input():
    assert demangle(None) is None  # type: ignore[arg-type]
