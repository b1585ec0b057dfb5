"""Train: session features -> a tuned logistic regression, tracked and registered in MLflow
(:mod:`.train`), its metrics and plots (:mod:`.evaluation`), the quality gate it obeys (:mod:`.gate`)."""
