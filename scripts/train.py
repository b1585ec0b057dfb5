"""make train: session features -> a tuned Spark ML logistic regression, tracked and registered in MLflow."""

import click

from website_activity.adapters.lake import silver_path
from website_activity.adapters.spark import spark_session
from website_activity.cli import common_options, main_wrapper, settings_from
from website_activity.cli.preflight import check_tracking_store
from website_activity.stages.train.gate import require_gate
from website_activity.stages.train.train import run_train


@click.command()
@common_options
@click.option("--reg-param", type=float, multiple=True,
              help="A regParam to search (repeatable; overrides train.reg_params).")
@click.option("--max-iter", type=int, default=None, help="Solver iterations (overrides train.max_iter).")
@click.option("--seed", type=int, default=None, help="Split, folds and search seed (overrides train.seed).")
@click.option("--log-model/--no-log-model", default=None,
              help="Log and register the fitted model in MLflow (overrides mlflow.log_model).")
@click.option("--force", is_flag=True,
              help="Train even if the lake failed validation, was never validated or changed since "
                   "(the MLflow run is tagged validation_forced=true and never becomes champion).")
@main_wrapper("train")
def main(profile, port, reg_param, max_iter, seed, log_model, force):
    """Fit the purchase model on session features and record one MLflow run.

    Refuses a lake that did not pass `make validate` (data/_validation/latest.json) unless --force.
    """
    settings = settings_from(profile, port, **{
        "train.reg_params": list(reg_param) or None, "train.max_iter": max_iter, "train.seed": seed,
        "mlflow.log_model": log_model})
    check_tracking_store(settings)  # a locked or unreachable store, before minutes of training
    silver_path(settings)  # fail in a second, not after starting Spark
    if not force:
        require_gate(settings)  # refuse in a second, not after starting Spark
    with spark_session(settings, "train") as spark:
        r = run_train(spark, settings, force=force)
    m, s = r["metrics"], r["seconds"]
    oracle = (f", oracle ROC AUC {m['oracle_roc_auc']:.3f} (gap {m['oracle_gap']:+.3f})"
              if "oracle_roc_auc" in m else ", no oracle (no ground truth)")
    if "oracle_model_roc_auc" in m:
        oracle += (f", a regression on the true inputs {m['oracle_model_roc_auc']:.3f} "
                   f"(the model {-m['oracle_model_gap']:+.3f} from it)")
    click.echo(f"train: run {r['run_id']} on {int(m['train_rows'])}/{int(m['validation_rows'])}/"
               f"{int(m['test_rows'])} train/validation/test sessions: test ROC AUC {m['roc_auc']:.3f}{oracle}, "
               f"PR AUC {m['pr_auc']:.3f}, log loss {m['log_loss']:.3f} (baseline {m['baseline_log_loss']:.3f}), "
               f"F1 {m['f1']:.3f} at threshold {r['threshold']:.3f}, accuracy {m['accuracy']:.3f} "
               f"(baseline {m['baseline_accuracy']:.3f}), {int(m['nonzero_coefficients'])} non-zero coefficients "
               f"({r['params']['search']}, regParam {r['params']['reg_param']}); "
               f"validation {r['validation']}{' (forced)' if force else ''}")
    if r["promotion"] is not None:
        p = r["promotion"]
        click.echo(f"train: version {p.version} {'is now champion' if p.promoted else 'not promoted'}: {p.reason}")
    click.echo("train: " + ", ".join(f"{k} {v:.1f}s" for k, v in s.items()))


if __name__ == "__main__":
    main()
