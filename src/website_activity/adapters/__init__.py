"""Adapters: one per outside system (atomic files, the Delta lake, Spark, the JVM, Kafka's client
settings and topics, MLflow's registry), and the crash tests' failpoints (they kill the Spark
JVM). Stages call them; they import core and each other only."""
