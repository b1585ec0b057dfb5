"""Dev tools, outside the pipeline: the embedded broker, TLS material, the local cluster harness and
the bench. Make runs them through scripts/; nothing of the pipeline imports them."""
