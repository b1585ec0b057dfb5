"""Kafka's security settings for kafka-python, Spark's source and the broker, from one place."""

from __future__ import annotations

from pathlib import Path

from website_activity.adapters.kafka_security import kafka_python_config, scram_jaas, spark_kafka_options

SECURE = {"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "username": "pipe", "password": 'p"w\\d'}


def test_plaintext_needs_no_settings() -> None:
    plain = {"protocol": "PLAINTEXT"}
    assert kafka_python_config(plain, Path("ca.pem")) == {} == spark_kafka_options(plain, Path("ca.pem"))


def test_the_jaas_line_quotes_the_login() -> None:
    assert scram_jaas("pipe", 'p"w\\d') == ('org.apache.kafka.common.security.scram.ScramLoginModule required '
                                             'username="pipe" password="p\\"w\\\\d";')


def test_sasl_ssl_for_each_client() -> None:
    ca = Path("/tls/ca.pem")
    assert kafka_python_config(SECURE, ca) == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "pipe",
        "sasl_plain_password": 'p"w\\d', "ssl_cafile": "/tls/ca.pem", "ssl_check_hostname": True}
    assert spark_kafka_options(SECURE, ca) == {
        "kafka.security.protocol": "SASL_SSL", "kafka.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.sasl.jaas.config": scram_jaas("pipe", 'p"w\\d'), "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.location": "/tls/ca.pem"}
