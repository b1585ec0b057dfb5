"""Website Activity: a reproducible web-traffic pipeline (Kafka -> Spark -> Parquet -> GX -> MLflow -> reports)."""

__version__ = "0.1.0"
