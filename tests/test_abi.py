"""The ABI document and host/sandbox/abi.py must describe the same contract."""

from __future__ import annotations

import re

from conftest import ROOT

from host.sandbox import abi

ABI_DOC = (ROOT / "guest_sdk" / "ABI.md").read_text()


def _documented_rows(section: str) -> dict[str, str]:
    body = ABI_DOC.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z_]\w*)` \| `([^`]*)` \|", body,
                                                         re.MULTILINE)}


def test_doc_names_every_import_with_its_module() -> None:
    documented = _documented_rows("Imports")
    assert sorted(abi.IMPORTS) == sorted(documented)
    assert f"module name `{abi.IMPORT_MODULE}`" in ABI_DOC


def test_doc_names_every_export() -> None:
    documented = _documented_rows("Exports")
    assert sorted([*abi.EXPORTS, *abi.OPTIONAL_EXPORTS, "memory"]) == sorted(documented)


def _meanings(section: str) -> dict[str, str]:
    body = ABI_DOC.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): m.group(2) for m in re.finditer(
        r"^\| `([a-z_]\w*)` \| `[^`]*` \| (.*) \|$", body, re.MULTILINE)}


def test_doc_marks_exactly_the_optional_exports() -> None:
    optional = {name for name, meaning in _meanings("Exports").items()
                if meaning.startswith("(optional)")}
    assert set(abi.OPTIONAL_EXPORTS) == optional
    assert not set(abi.OPTIONAL_EXPORTS) & set(abi.EXPORTS)


def test_doc_marks_exactly_the_fetch_only_imports() -> None:
    fetch_only = {name for name, meaning in _meanings("Imports").items()
                  if meaning.startswith("(fetch only)")}
    assert set(abi.FETCH_IMPORTS) == fetch_only
    assert set(abi.FETCH_IMPORTS) <= set(abi.IMPORTS)


def test_doc_signatures_match_parameter_counts() -> None:
    for name, signature in {**abi.IMPORTS, **abi.EXPORTS, **abi.OPTIONAL_EXPORTS}.items():
        row = {**_documented_rows("Imports"), **_documented_rows("Exports")}[name]
        params = row.split("->")[0].strip().strip("()")
        # "a, b: i32" declares two i32 parameters; count names, not types.
        names = [p for p in re.split(r",\s*", params) if p]
        assert len(signature.params) == len(names), name
        results = row.split("->")[1].strip() if "->" in row else "()"
        assert (results != "()") == bool(signature.results), name


def test_doc_states_version_and_codes() -> None:
    assert f"# dwf guest ABI, version {abi.ABI_VERSION}" in ABI_DOC
    for code in abi.StepCode:
        assert f"| `{code.value}` | `{code.name}` |" in ABI_DOC
