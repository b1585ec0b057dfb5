"""Validate: the Great Expectations quality gate on the lake, and the gate ``make train`` obeys.

Two suites, generated from the configuration (never written by hand):

``silver`` (from ``schema`` and ``validation``), on the whole silver table:

* the exact column set (the declared fields plus the lake columns ingest adds) and each
  column's Spark type; at least one row;
* not-null on every required field; values in set for every enum; ``event_id`` unique
  (replays must not double count);
* ids are UUIDs and ``ip_address`` is an IPv4 address (anchored regexes: Spark's ``rlike``
  matches substrings);
* click coordinates inside the device's viewport for clicks (one ``row_condition`` per device),
  ``-1`` for every other action;
* event times not before ``generator.start_time`` minus a margin and never in the future (the
  "now" of each run is a suite parameter, so the saved suite does not change from run to run);
* each device's share of events within bounds (``mostly=``: distribution sanity).

``reconciliation``, on one row of counts: the records ingest read (``data/_runs/ingest.json``)
equal the silver rows plus the quarantined rows (both counted in the lake now) plus the
duplicates ingest removed; the share of quarantined records is at most
``validation.max_quarantine_rate``. A lake that ingest did not write (no ``ingest.json``) has
no records-read count: the equation's column is null and GX skips it (logged as a warning).

Validation always covers the whole lake, not only the partitions new since the last run:
uniqueness of ``event_id`` is a property of the whole table (a replay lands in another
partition), and a million rows take well under a minute on ``local[2]``
(``make bench``).

Each suite runs in two passes (see :func:`.runner.validate_frames`): pass/fail for every expectation,
then counts and example values for the failed ones and those with ``mostly``. So the Data Docs
and ``data_quality.csv`` show counts and examples where they matter; a passing column check
without ``mostly`` has, by definition, no unexpected row (0 in the CSV, no count in the docs).

The suites, validation definitions and checkpoints are saved into the Great Expectations
project in ``paths.gx`` (committed; every run regenerates them, so they cannot drift from the
config). Each run stores its results in ``gx/uncommitted/`` (git-ignored), rebuilds the Data Docs
in ``<reports>/data_docs/`` (viewable offline, see :mod:`website_activity.stages.validate.data_docs`), writes
``<reports>/data_quality.csv`` and records the outcome and a fingerprint of the lake in
``paths.validation/latest.json``, which ``website_activity.stages.train.gate`` reads before training.

The parts, pure first:

* :mod:`.suites`: the two suites, generated from the configuration's values (:class:`SuiteRules`; no I/O);
* :mod:`.outcomes`: a GX result as :class:`Outcome` records, the :class:`ValidationReport`, and
  the CSV and JSON documents made from it (no I/O);
* :mod:`.context`: GX plumbing (in-memory and file contexts, saved suites, checkpoints);
* :mod:`.runner`: :func:`validate_frames`, DataFrames in, a report out (GX's in-memory context
  only, unit-tested on inline DataFrames);
* :mod:`.run`: the I/O edge, :func:`run_validate` reads the lake and writes the outputs.
"""

from __future__ import annotations

from website_activity.stages.validate.context import ephemeral_context, file_context, save_project, suite_rules
from website_activity.stages.validate.outcomes import CSV_HEADER, Outcome, ValidationReport
from website_activity.stages.validate.run import ingest_counts, run_validate, write_quality_csv, write_report
from website_activity.stages.validate.runner import reconciliation_frame, validate_frame, validate_frames
from website_activity.stages.validate.suites import (RECONCILIATION_SUITE, SUITE_NAME, SUITES, SuiteRules,
                                                     build_reconciliation_suite, build_suite, build_suites,
                                                     earliest_event_time, quarantine_rate, suite_parameters)

__all__ = ["CSV_HEADER", "Outcome", "RECONCILIATION_SUITE", "SUITES", "SUITE_NAME", "SuiteRules", "ValidationReport",
           "build_reconciliation_suite", "build_suite", "build_suites", "earliest_event_time",
           "ephemeral_context", "file_context", "ingest_counts", "quarantine_rate",
           "reconciliation_frame", "run_validate", "save_project", "suite_parameters", "suite_rules", "validate_frame",
           "validate_frames", "write_quality_csv", "write_report"]
