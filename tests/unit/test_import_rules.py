"""What may import what, checked on the source tree (every import, at module level or in a function).

The package's folders are its layers (docs/layout.md):

* core/: errors, the configuration, the one event schema, the catalog of paths between stages,
  the manifests (the files stages hand each other, as typed records). Imports nothing of ours
  outside core and no engine; the manifests import the stdlib and core.errors only.
* adapters/: one per outside system (files, the Delta lake, Spark, the JVM, Kafka, MLflow), and
  the crash tests' failpoints. Import core and adapters only: never a stage, the simulator, the
  CLI or the devtools.
* simulate/: the traffic model. Imports core only.
* stages/: produce, ingest, validate, train, score, report, in run order (a module or a package
  each), and features (the model's inputs train fits on and score applies: shared by the two, not
  a stage). A stage never imports another stage: they meet through core.catalog's paths.
* cli/: the click helpers, preflight, the runners (make all, make live): the only layer of the
  pipeline that calls stages.
* devtools/: the broker and cluster harnesses, TLS material, the bench. Nothing of the pipeline
  imports them (Make runs them through scripts/); they may use every part of it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "website_activity"
LAYERS = ("core", "adapters", "simulate", "stages", "cli", "devtools")
STAGES = ("produce", "ingest", "validate", "train", "score", "report")
SHARED = {"features"}  # under stages/, imported by more than one stage, itself no stage
# Third-party packages core may use: the configuration's YAML parser, nothing else.
CORE_THIRD_PARTY = {"yaml"}
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name under website_activity (``stages.train.gate``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path: Path) -> tuple[set[str], set[str]]:
    """(our modules as dotted names under website_activity, other top-level packages) that the
    file imports anywhere in its source."""
    ours, others = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module.startswith("website_activity"):  # from website_activity.x import y: y may be a module
                names += [f"{node.module}.{a.name}" for a in node.names]
        else:
            assert not isinstance(node, ast.ImportFrom), f"{path}: a relative import"
            continue
        for name in names:
            if name == "website_activity" or name.startswith("website_activity."):
                if name != "website_activity":
                    ours.add(name.removeprefix("website_activity."))
            else:
                others.add(name.split(".")[0])
    return ours, others


def layer(name: str) -> str:
    return name.split(".")[0]


def stage(name: str) -> str | None:
    """The stage a dotted name belongs to (``stages.validate.suites`` -> ``validate``), else None."""
    parts = name.split(".")
    return parts[1] if parts[0] == "stages" and len(parts) > 1 and parts[1] in STAGES else None


def known(ours: set[str]) -> set[str]:
    """Only the names that are modules (``from website_activity.core.config import Settings``
    yields ``core.config.Settings`` too)."""
    return ours & set(modules())


def test_every_module_sits_in_a_layer() -> None:
    found = modules()
    assert {layer(m) for m in found if m} <= set(LAYERS), sorted({layer(m) for m in found} - set(LAYERS))
    assert not [m for m in found if "." not in m and m and m not in LAYERS]  # nothing loose at the top
    for name in STAGES:
        assert f"stages.{name}" in found, name  # the stages the rules name exist
    assert {f"stages.{s}" for s in SHARED} <= set(found)


def test_core_imports_only_core_and_no_engine() -> None:
    for name, path in modules().items():
        if layer(name) != "core":
            continue
        ours, others = imports(path)
        assert {layer(m) for m in ours} <= {"core"}, (name, ours)
        assert others <= STDLIB | CORE_THIRD_PARTY, (name, others - STDLIB - CORE_THIRD_PARTY)


def test_the_manifests_are_stdlib_records() -> None:
    # core.manifests: frozen dataclasses of the files stages hand each other; not even YAML
    ours, others = imports(modules()["core.manifests"])
    assert known(ours) <= {"core.errors"}, ours
    assert others <= STDLIB, others - STDLIB


def test_adapters_and_the_simulator_import_no_stage_cli_or_devtools() -> None:
    allowed = {"adapters": {"core", "adapters"}, "simulate": {"core", "simulate"}}
    for name, path in modules().items():
        if layer(name) in allowed:
            ours, _ = imports(path)
            assert {layer(m) for m in ours} <= allowed[layer(name)], (name, ours)


def test_a_stage_never_imports_another_stage() -> None:
    for name, path in modules().items():
        if layer(name) != "stages":
            continue
        ours, _ = imports(path)
        own = stage(name)
        assert {layer(m) for m in ours} <= {"core", "adapters", "simulate", "stages"}, (name, ours)
        others = {stage(m) for m in ours if stage(m)} - {own}
        assert not others, f"{name} imports the stage(s) {sorted(others)}"
        shared = {m for m in known(ours) if layer(m) == "stages" and not stage(m)}
        assert shared <= {"stages"} | {f"stages.{s}" for s in SHARED}, (name, shared)


def test_the_shared_stage_modules_import_no_stage() -> None:
    for name in SHARED:
        ours, _ = imports(modules()[f"stages.{name}"])
        assert not {stage(m) for m in ours if stage(m)}, (name, ours)


def test_only_the_cli_calls_stages() -> None:
    for name, path in modules().items():
        if layer(name) in ("stages", "cli", "devtools"):
            continue
        ours, _ = imports(path)
        assert not {m for m in ours if layer(m) == "stages"}, (name, ours)


def test_nothing_of_the_pipeline_imports_the_devtools() -> None:
    for name, path in modules().items():
        if layer(name) == "devtools":
            continue
        ours, _ = imports(path)
        assert not {m for m in ours if layer(m) == "devtools"}, (name, ours)


# Inside a stage, the pure transforms apart from the module that does the I/O: they receive
# values (not the whole Settings) and import no adapter that reads or writes.
PURE = {"stages.ingest.transforms", "stages.ingest.accounting"}
IO_ADAPTERS = {"adapters.files", "adapters.lake", "adapters.failpoints", "adapters.topics", "adapters.registry"}


def test_pure_transforms_take_values_and_do_no_io() -> None:
    found = modules()
    assert PURE <= set(found), sorted(PURE - set(found))
    for name in sorted(PURE):
        ours, others = imports(found[name])
        assert "core.config" not in ours, f"{name} imports the settings: pass it values"
        assert not known(ours) & IO_ADAPTERS, (name, sorted(known(ours) & IO_ADAPTERS))
        assert not others & {"pathlib", "os", "shutil", "mlflow", "kafka", "great_expectations"}, (name, others)


# The manifests' paths (core.catalog) and the records they hold (core.manifests).
MANIFEST_PATHS = {"produce_manifest_path", "ingest_summary_path", "validation_gate_path", "model_metrics_path",
                  "champion_card_path"}
UNTYPED_IO = {"read_json", "write_json", "write_text", "read_text", "loads", "open"}


def _called(node: ast.AST) -> str | None:
    func = node.func if isinstance(node, ast.Call) else None
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _names_a_manifest(node: ast.AST) -> bool:
    return any(_called(n) in MANIFEST_PATHS for n in ast.walk(node))


def test_manifests_are_read_and_written_as_records() -> None:
    """Every read or write of a manifest's path goes through adapters.files' record functions: no
    ``json.loads(path.read_text())``, ``read_json(path)`` or ``write_json(path, ...)`` of it."""
    untyped = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            called = _called(node)
            if called in UNTYPED_IO:
                receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
                parts = [*node.args, *(k.value for k in node.keywords), *([receiver] if receiver else [])]
                if any(_names_a_manifest(p) for p in parts):
                    untyped.append(f"{name}:{node.lineno} {called}")
    assert not untyped, untyped
