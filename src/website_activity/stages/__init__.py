"""The pipeline's stages in run order: produce, ingest, validate, train, score, report (features:
the model's inputs, shared by train and score). A stage never imports another: they meet through
:mod:`website_activity.core.catalog`'s paths and the manifests there."""
