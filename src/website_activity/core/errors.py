"""Errors a user can cause and fix. Entry points print them as one line and exit non-zero."""


class PipelineError(Exception):
    """A failure with a one-line explanation meant for the user (no stack trace)."""

    exit_code = 2


class ConfigError(PipelineError):
    """The configuration is missing, malformed, or names an unknown key, type or profile."""


class ValidationFailed(PipelineError):
    """The data quality gate failed: training must not go on.

    ``report`` is the :class:`website_activity.stages.validate.ValidationReport` when there is one.
    """

    exit_code = 3

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


def first_line(exc: object) -> str:
    """The first line of an error, at most 300 characters: a JVM error's message without its trace."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
