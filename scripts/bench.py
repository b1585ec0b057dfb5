"""make bench: each stage of the pipeline beside its baseline, on services of its own
(see website_activity.devtools.bench).

    make bench                    # BENCH_EVENTS=1000000
    make bench QUICK=1            # 100k events
    .venv/bin/python scripts/bench.py --events 20000 --runs 1 --out-dir /tmp/bench
"""

from pathlib import Path

import click

from website_activity.cli import common_options, main_wrapper, settings_from
from website_activity.devtools.bench import QUICK_EVENTS, run_bench, table, write_outputs


@click.command()
@common_options
@click.option("--events", type=click.IntRange(min=1000), default=1_000_000, show_default=True,
              help="Valid events for the pipeline (make bench: BENCH_EVENTS).")
@click.option("--quick", is_flag=True, help=f"{QUICK_EVENTS:,} events (make bench QUICK=1).")
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs of each cheap figure (generator, naive, ProducerPerformance, Spark batch); the median is kept.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where bench.json and bench.csv go (default: paths.reports).")
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Scratch folder for the broker and the lake, kept (default: a temp folder, removed).")
@click.option("--growth-batch", type=click.IntRange(min=100), default=None,
              help="Records per batch of the batch-growth phase (default 10,000; smaller: a quicker smoke run).")
@click.option("--growth-batches", type=click.IntRange(min=2), default=None,
              help="Batches per lake size in the batch-growth phase, the first a warm-up (default 3).")
@click.option("--live-seconds", type=click.FloatRange(min=1), default=None,
              help="Seconds of each live run (default 60; 30 below 1M events).")
@main_wrapper("bench")
def main(profile, port, events, quick, runs, seed, out_dir, workdir, growth_batch, growth_batches,
         live_seconds):
    """Run the pipeline's stages and their baselines; write bench.json, bench.csv and print a table
    (each stage's output in bench_logs/ beside them)."""
    settings = settings_from(profile, port)
    if quick:
        events = QUICK_EVENTS
    out_dir = out_dir or settings.path("reports")
    bench = run_bench(settings, profile, events, runs=runs, seed=seed, workdir=workdir,
                      logs=out_dir / "bench_logs", growth_batch=growth_batch,
                      growth_batches=growth_batches, live_seconds=live_seconds)
    js, cs = write_outputs(bench, out_dir)
    click.echo(table(bench))
    click.echo(f"bench: wrote {js} and {cs}")


if __name__ == "__main__":
    main()
