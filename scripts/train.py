"""make train: session features from data/silver -> Spark ML logistic regression, tracked in MLflow."""

import click

from website_activity.cli import common_options, main_wrapper, settings_from
from website_activity.spark import spark_session
from website_activity.lake import silver_path
from website_activity.train import run_train
from website_activity.validate import require_gate


@click.command()
@common_options
@click.option("--reg-param", type=float, default=None, help="L2/L1 strength (overrides train.reg_param).")
@click.option("--max-iter", type=int, default=None, help="Solver iterations (overrides train.max_iter).")
@click.option("--seed", type=int, default=None, help="Train/test split seed (overrides train.seed).")
@click.option("--log-model/--no-log-model", default=None,
              help="Log the fitted model to MLflow (overrides mlflow.log_model).")
@click.option("--force", is_flag=True,
              help="Train even if the lake failed validation, was never validated or changed since "
                   "(the MLflow run is tagged validation_forced=true).")
@main_wrapper("train")
def main(profile, port, reg_param, max_iter, seed, log_model, force):
    """Fit the purchase model on session features and record one MLflow run.

    Refuses a lake that did not pass `make validate` (data/_validation/latest.json) unless --force.
    """
    settings = settings_from(profile, port, **{
        "train.reg_param": reg_param, "train.max_iter": max_iter, "train.seed": seed,
        "mlflow.log_model": log_model})
    silver_path(settings)  # fail in a second, not after starting Spark
    if not force:
        require_gate(settings)  # refuse in a second, not after starting Spark
    with spark_session(settings, "train") as spark:
        r = run_train(spark, settings, force=force)
    m = r["metrics"]
    click.echo(f"train: run {r['run_id']} on {int(m['train_rows'])}/{int(m['test_rows'])} train/test sessions: "
               f"ROC AUC {m['roc_auc']:.3f}, PR AUC {m['pr_auc']:.3f}, accuracy {m['accuracy']:.3f} "
               f"(baseline {m['baseline_accuracy']:.3f}), F1 {m['f1']:.3f}; "
               f"fit {r['seconds']['fit']:.1f}s, log_model {r['seconds']['log_model']:.1f}s; "
               f"validation {r['validation']}{' (forced)' if force else ''}")


if __name__ == "__main__":
    main()
