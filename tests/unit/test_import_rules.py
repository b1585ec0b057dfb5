"""What may import what, checked on the source tree (every import, at module level or in a function).

The package is flat for now; these groups are its parts (docs/layout.md):

* core: the configuration, errors, the one event schema, the catalog of paths between stages,
  atomic files, Kafka's security settings. Imports nothing of ours outside core and no engine.
* stages: produce, ingest, validate, train, score, report (with its dashboard and the records
  between them, report_data). A stage never imports another stage: they meet through catalog
  paths (validate's gate for train is gate.py).
* runners: what runs stages in order or together (cli, summary for make all, live).
* devtools: the broker and cluster harnesses, TLS material, the bench. Nothing of the pipeline
  imports them (Make runs them through scripts/).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "website_activity"
CORE = {"errors", "config", "schema", "catalog", "files", "kafka_security"}
STAGES = {"produce": {"produce"}, "ingest": {"ingest"}, "validate": {"validate", "data_docs"},
          "train": {"train"}, "score": {"score"}, "report": {"report", "dashboard", "report_data"}}
RUNNERS = {"cli", "summary", "live"}
DEVTOOLS = {"broker", "cluster", "tls", "bench"}
# Third-party packages core may use: the configuration's YAML parser, nothing else.
CORE_THIRD_PARTY = {"yaml"}


def imports(module: str) -> tuple[set[str], set[str]]:
    """(our modules, other top-level packages) that ``module`` (a module, or a package and all its
    files) imports anywhere in its source."""
    path = PACKAGE / module
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    nodes = [n for f in files for n in ast.walk(ast.parse(f.read_text(encoding="utf-8")))]
    ours, others = set(), set()
    for node in nodes:
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        for name in names:
            if name == "website_activity":
                ours.update(a.name for a in node.names)
            elif name.startswith("website_activity."):
                ours.add(name.split(".")[1])
            else:
                others.add(name.split(".")[0])
    return ours, others


def modules() -> list[str]:
    """Our top-level modules and packages (a package counts as one module: validate/ is one)."""
    files = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return sorted(files | {p.parent.name for p in PACKAGE.glob("*/__init__.py")})


def test_every_module_is_in_the_tree_the_groups_describe() -> None:
    grouped = CORE | set().union(*STAGES.values()) | RUNNERS | DEVTOOLS
    assert grouped <= set(modules())  # no group names a module that is gone


def test_core_imports_only_core_and_no_engine() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for module in sorted(CORE):
        ours, others = imports(module)
        assert ours <= CORE, (module, ours - CORE)
        assert others <= stdlib | CORE_THIRD_PARTY, (module, others - stdlib - CORE_THIRD_PARTY)


def test_a_stage_never_imports_another_stage() -> None:
    owner = {m: stage for stage, members in STAGES.items() for m in members}
    for module, stage in owner.items():
        ours, _ = imports(module)
        others = {owner[m] for m in ours if m in owner} - {stage}
        assert not others, f"{module} ({stage}) imports the stage(s) {sorted(others)}"


def test_nothing_of_the_pipeline_imports_the_devtools() -> None:
    for module in modules():
        if module in DEVTOOLS:
            continue
        ours, _ = imports(module)
        assert not ours & DEVTOOLS, (module, ours & DEVTOOLS)


def test_only_runners_call_more_than_one_stage() -> None:
    members = set().union(*STAGES.values())
    for module in modules():
        if module in RUNNERS or module in DEVTOOLS or module in members:
            continue
        ours, _ = imports(module)
        assert not ours & members, (module, ours & members)
