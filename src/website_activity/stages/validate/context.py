"""Great Expectations plumbing: contexts (in memory, or the project in ``paths.gx``), the saved
suites, validation definitions and checkpoints, and the suites' rules read from the configuration
(:func:`suite_rules`: the pure :mod:`.suites` receive those values, not the configuration)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from website_activity.core.config import Settings
from website_activity.core.errors import PipelineError, first_line
from website_activity.stages.validate.suites import SUITES, SuiteRules, build_suites

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

DATASOURCE = "lake"
DOCS_SITE = "reports"


def suite_rules(settings: Settings) -> SuiteRules:
    """The values of the configuration the suites are generated from."""
    rules = settings["validation"]
    return SuiteRules(fields=settings.schema_fields, enums=settings["schema"]["enums"],
                      viewports=rules["viewports"], device_share=rules["device_share"],
                      start_time=settings["generator"]["start_time"],
                      event_time_margin_h=rules["event_time_margin_h"], clock_skew_s=rules["clock_skew_s"],
                      max_quarantine_rate=rules["max_quarantine_rate"])


def _quiet(context: Any) -> Any:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def _quiet_gx_logger() -> None:
    # This GX module pins its own logger at INFO (one line per context about a temp docs
    # folder): let it inherit from "great_expectations" again, as the entry point configured it.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.NOTSET)


def ephemeral_context() -> Any:
    """An in-memory GX context with its progress bars off (for tests and dry runs)."""
    import great_expectations as gx

    _quiet_gx_logger()
    return _quiet(gx.get_context(mode="ephemeral"))


def file_context(settings: Settings) -> Any:
    """The GX project in ``paths.gx`` (created on first use), with the Data Docs site in
    ``<reports>/data_docs``.

    The site is configured in memory only: its folder depends on ``paths.reports``, and the
    committed ``great_expectations.yml`` must not change from one machine (or test) to another.
    """
    import great_expectations as gx

    from website_activity.stages.validate.data_docs import site_config

    _quiet_gx_logger()
    root = settings.path("gx")
    try:
        context = gx.get_context(mode="file", context_root_dir=str(root))
    except Exception as exc:  # a broken great_expectations.yml: one line, not a GX trace
        raise PipelineError(f"cannot open the Great Expectations project in {root}: "
                            f"{first_line(exc)}") from exc
    batch_definitions(context)  # may save great_expectations.yml: before the site is set
    context.variables.data_docs_sites = {DOCS_SITE: site_config(settings.path("reports") / "data_docs")}
    return _quiet(context)


def batch_definitions(context: Any) -> dict[str, Any]:
    """One Spark dataframe asset per suite, each with a whole-dataframe batch definition.

    Looked up before being added, so that their ids (in great_expectations.yml) stay put.
    """
    try:
        source = context.data_sources.get(DATASOURCE)
    except KeyError:
        source = context.data_sources.add_spark(name=DATASOURCE)
    definitions = {}
    for name in SUITES:
        try:
            asset = source.get_asset(name)
        except LookupError:
            asset = source.add_dataframe_asset(name=name)
        try:
            definitions[name] = asset.get_batch_definition("whole")
        except KeyError:
            definitions[name] = asset.add_batch_definition_whole_dataframe(name="whole")
    return definitions


def _expectation_key(expectation: Any) -> str:
    config = expectation.configuration.to_json_dict()
    config.pop("id", None)
    return json.dumps(config, sort_keys=True, default=str)


def _save_suite(context: Any, suite: "ExpectationSuite") -> "ExpectationSuite":
    """Add or update a suite, keeping the ids of the expectations that did not change.

    GX's ``suites.add_or_update`` means to keep them, but compares expectations ids included,
    so every run would rewrite every id in the committed JSON.
    """
    from great_expectations.exceptions import DataContextError

    try:
        existing = context.suites.get(suite.name)
    except DataContextError:
        existing = None
    if existing is not None:
        ids = {_expectation_key(e): e.id for e in existing.expectations}
        for expectation in suite.expectations:
            expectation.id = ids.get(_expectation_key(expectation))
    return context.suites.add_or_update(suite)


def save_checkpoints(context: Any, rules: SuiteRules, names: list[str], docs: bool) -> dict[str, Any]:
    """Save the suites, validation definitions and one checkpoint per suite (add or update)."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    suites = build_suites(rules)
    definitions = batch_definitions(context)
    actions = [UpdateDataDocsAction(name="data_docs", site_names=[DOCS_SITE])] if docs else []
    checkpoints = {}
    for name in names:
        suite = _save_suite(context, suites[name])
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=definitions[name], suite=suite))
        checkpoints[name] = context.checkpoints.add_or_update(gx.Checkpoint(
            name=name, validation_definitions=[definition], actions=actions,
            result_format={"result_format": "BOOLEAN_ONLY"}))
    return checkpoints


def save_project(settings: Settings) -> Path:
    """Write the generated suites, validation definitions and checkpoints into ``paths.gx``.

    ``make validate`` does this on every run; on its own it needs no data, so a change of the
    rules in ``conf/base.yaml`` can be reviewed as a diff of ``gx/``. (GX starts a local Spark
    session once, when it first creates the project's Spark data source.)

    Returns:
        The GX project folder.
    """
    save_checkpoints(file_context(settings), suite_rules(settings), list(SUITES), docs=True)
    return settings.path("gx")
