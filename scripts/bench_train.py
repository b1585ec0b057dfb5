"""How long make train takes, and how close it gets to the oracle, on a large generated lake (run by hand).

Generates --events events with the generator (two streams, like the two producers), parses them
as ingest does into a scratch silver table (no broker), then runs `run_train` (features, search,
evaluation, MLflow logging into a scratch store) and prints the seconds of each step and the test
ROC AUC (with the oracle AUC and the gap when the scratch lake has ground truth: pass
--ground-truth DIR to use the generator's). Results also go to <reports>/bench_train.json.

    .venv/bin/python scripts/bench_train.py --events 1000000
"""

import json
import shutil
import tempfile
import time
from pathlib import Path

import click

from website_activity.cli import common_options, main_wrapper, settings_from
from website_activity.generator import EventGenerator
from website_activity.ingest import parse_records, split_valid
from website_activity.spark import spark_session
from website_activity.train import run_train


@click.command()
@common_options
@click.option("--events", type=int, default=1_000_000, show_default=True, help="Events generated.")
@click.option("--seed", type=int, default=7, show_default=True, help="The generator's seed.")
@click.option("--ground-truth", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="A folder of ground-truth Parquet files for these events (the oracle metrics).")
@click.option("--log-model/--no-log-model", default=True, show_default=True, help="Time log_model too.")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Scratch folder (default: a temp folder, removed at the end).")
@main_wrapper("bench-train")
def main(profile, port, events, seed, ground_truth, log_model, workdir):
    """Time features + search + evaluation + logging on EVENTS generated events."""
    scratch = workdir or Path(tempfile.mkdtemp(prefix="bench-train-"))
    keys = ("silver", "quarantine", "validation", "models", "features", "predictions", "runs")
    overrides = {f"paths.{key}": str(scratch / key) for key in keys}
    overrides.update({"paths.ground_truth": str(ground_truth or scratch / "ground_truth"),
                      "mlflow.tracking_uri": f"sqlite:///{scratch / 'mlflow.db'}",
                      "mlflow.artifact_root": str(scratch / "mlruns"), "mlflow.log_model": log_model})
    settings = settings_from(profile, port, **overrides)
    try:
        with spark_session(settings, "bench-train") as spark:
            started = time.monotonic()
            streams = [EventGenerator.from_settings(settings, seed, s).events(n)
                       for s, n in (("producer-a", events - events // 2), ("producer-b", events // 2))]
            records = [(json.dumps(e), t, i % 2, i) for t, g in zip(("producer-a", "producer-b"), streams)
                       for i, e in enumerate(g)]
            raw = spark.createDataFrame(records, "value string, topic string, partition int, offset long")
            silver, _ = split_valid(parse_records(raw, settings), settings)
            silver.write.mode("overwrite").partitionBy("event_date").parquet(str(scratch / "silver"))
            del records
            click.echo(f"bench-train: {events} events generated and written in {time.monotonic() - started:.0f}s")
            r = run_train(spark, settings, force=True)
        m, s = r["metrics"], r["seconds"]
        result = {"events": events, "master": settings["spark"]["master"], "seconds": s,
                  "sessions": int(m["train_rows"] + m["validation_rows"] + m["test_rows"]),
                  **{k: m[k] for k in ("roc_auc", "pr_auc", "log_loss", "oracle_roc_auc", "oracle_gap") if k in m}}
        out = settings.path("reports")
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_train.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        oracle = (f", oracle {m['oracle_roc_auc']:.4f} (gap {m['oracle_gap']:+.4f})" if "oracle_roc_auc" in m
                  else " (no ground truth: no oracle)")
        click.echo(f"bench-train: {result['sessions']} sessions, test ROC AUC {m['roc_auc']:.4f}{oracle}; "
                   + ", ".join(f"{k} {v:.1f}s" for k, v in s.items()))
    finally:
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
