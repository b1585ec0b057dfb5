"""Kafka's security settings, built once for each client that needs them.

``kafka.security`` (PLAINTEXT, or SASL_SSL with a SCRAM login and the CA's certificate) becomes
the settings of kafka-python (producers, topics, the admin client), the options of Spark's Kafka
source and the JAAS line both Spark and the embedded broker take. No engine is imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def scram_jaas(username: str, password: str) -> str:
    """The SCRAM login as a JAAS line, the user name and password quoted as JAAS string literals."""
    quote = lambda s: s.replace("\\", "\\\\").replace('"', '\\"')  # noqa: E731
    return ("org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{quote(username)}" password="{quote(password)}";')


def kafka_python_config(security: dict[str, Any], ca: Path) -> dict[str, Any]:
    """kafka-python settings: none for PLAINTEXT; for SASL_SSL, TLS checked against the CA's
    certificate (host name included) and the SCRAM login."""
    if security["protocol"] == "PLAINTEXT":
        return {}
    return {"security_protocol": "SASL_SSL", "sasl_mechanism": security["sasl_mechanism"],
            "sasl_plain_username": security["username"], "sasl_plain_password": security["password"],
            "ssl_cafile": str(ca), "ssl_check_hostname": True}


def spark_kafka_options(security: dict[str, Any], ca: Path) -> dict[str, str]:
    """Spark Kafka source options: none for PLAINTEXT; for SASL_SSL the SCRAM login as a JAAS
    line and the CA's PEM certificate as the truststore (kafka-clients reads PEM truststores).

    The JAAS line holds the password: Spark passes it to the Kafka client, whose logged
    configuration shows it as ``[hidden]``.
    """
    if security["protocol"] == "PLAINTEXT":
        return {}
    return {"kafka.security.protocol": "SASL_SSL", "kafka.sasl.mechanism": security["sasl_mechanism"],
            "kafka.sasl.jaas.config": scram_jaas(security["username"], security["password"]),
            "kafka.ssl.truststore.type": "PEM", "kafka.ssl.truststore.location": str(ca)}
