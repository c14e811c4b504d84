"""Every error Wavefleet raises on purpose, as one tree.

    WaveError                      base; carries the exit code a command ends with
    ├── UsageError                 the person asked for something that cannot be (exit 2)
    │   ├── ConfigError            a file failed to load or validate: file, line and fix
    │   ├── UnknownIdError         an id not in the catalog (or inventory), with the nearest ones
    │   └── MissingExtraError      an optional part is not installed: names the pip extra to add
    ├── EngineError                an engine we start (embedded llama.cpp) failed (exit 1)
    ├── BenchError                 a load run could not run or its criteria failed (exit 1)
    ├── ModelError                 a model pipeline step (fetch, quantize) could not be done (exit 1)
    │   └── ChecksumError          a fetched file is not the one asked for: sha256 or GGUF magic
    └── GatewayError               answered to HTTP clients in OpenAI's error format
        ├── BadRequestError        400  malformed JSON or fields
        ├── AuthenticationError    401  missing or wrong credentials
        ├── PermissionDeniedError  403  credentials fine, but not for this model
        ├── ModelNotFoundError     404  no backend serves the model (lists the known ones)
        ├── NotFoundError          404  no such path (lists the API's paths)
        ├── MethodNotAllowedError  405  the path exists, not with this method
        ├── ConflictError          409  the request clashes with what runs now (a rollout under way)
        ├── BodyTooLargeError      413
        ├── RateLimitError         429  with Retry-After
        ├── UpstreamError          502  an engine answered with garbage or dropped the connection
        ├── NoHealthyBackendError  503  with Retry-After
        │   └── ModelNotReadyError 503  the fleet agent's model is loading past its timeout, or draining
        │       └── ModelFailedError  503  it failed on its host: names the host, why, what to do
        └── UpstreamTimeoutError   504

Errors from libraries (aiohttp, pydantic, yaml) are translated where they enter our code, with
``raise OurError(...) from exc``, so callers never catch a foreign exception type.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wavefleet.wire import error_body

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BenchError",
    "BodyTooLargeError",
    "ChecksumError",
    "ConfigError",
    "ConfigProblem",
    "ConflictError",
    "EngineError",
    "GatewayError",
    "MethodNotAllowedError",
    "MissingExtraError",
    "ModelError",
    "ModelFailedError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "NoHealthyBackendError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "UnknownIdError",
    "UpstreamError",
    "UpstreamTimeoutError",
    "UsageError",
    "WaveError",
    "nearest",
]


class WaveError(Exception):
    """Base of every error Wavefleet raises on purpose."""

    exit_code = 1


class UsageError(WaveError):
    """The request cannot be met as asked; the message says what to change."""

    exit_code = 2


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a file, where it is, and how to fix it."""

    file: Path | str
    line: int | None
    where: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        place = f"{self.file}:{self.line}" if self.line else f"{self.file}"
        text = f"{place}: {self.where}: {self.message}" if self.where else f"{place}: {self.message}"
        return f"{text}\n    fix: {self.fix}" if self.fix else text


class ConfigError(UsageError):
    """A file did not load or validate. Holds every problem found, each with file and line."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UnknownIdError(UsageError):
    """An id that is not known, with the nearest known ids as suggestions."""

    def __init__(
        self, kind: str, given: str, known: Iterable[str], listed_by: str = "wave catalog list"
    ) -> None:
        self.kind, self.given = kind, given
        self.suggestions = nearest(given, known)
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown {kind} id {given!r}{hint} (`{listed_by}` shows them all)")


class MissingExtraError(UsageError):
    """A command needs an optional part that is not installed; the message names the extra."""

    def __init__(self, message: str, *, extra: str) -> None:
        super().__init__(message)
        self.extra = extra


def nearest(given: str, known: Iterable[str], limit: int = 3) -> list[str]:
    """The known ids closest to `given`, best first (substring matches count as close)."""
    candidates = sorted(set(known))
    close = difflib.get_close_matches(given.lower(), candidates, n=limit, cutoff=0.5)
    contained = [k for k in candidates if given.lower() in k and k not in close]
    return (close + contained)[:limit]


class EngineError(WaveError):
    """An engine Wavefleet starts itself failed to start or died."""


class BenchError(WaveError):
    """A load test could not run, or its success criteria were not met."""


class ModelError(WaveError):
    """A model file could not be fetched or quantized: the server, the network, the disk or the
    tool said no; the message says what to do (a partial download is kept to resume)."""


class ChecksumError(ModelError):
    """A fetched file arrived whole but is not the one asked for: its sha256 differs, or it is no
    GGUF file. Nothing the user had is changed."""


class GatewayError(WaveError):
    """An error answered to an HTTP client, in OpenAI's error format."""

    status = 500
    error_type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, retry_after: float | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.param = param

    def to_openai(self) -> dict[str, object]:
        """The body OpenAI's API sends for an error, which its clients parse."""
        return error_body(self.message, error_type=self.error_type, code=self.code, param=self.param)


class BadRequestError(GatewayError):
    status, error_type, code = 400, "invalid_request_error", "invalid_request"


class AuthenticationError(GatewayError):
    status, error_type, code = 401, "invalid_request_error", "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status, error_type, code = 403, "invalid_request_error", "model_not_allowed"


class ModelNotFoundError(GatewayError):
    status, error_type, code = 404, "invalid_request_error", "model_not_found"


class NotFoundError(GatewayError):
    status, error_type, code = 404, "invalid_request_error", "not_found"


class MethodNotAllowedError(GatewayError):
    status, error_type, code = 405, "invalid_request_error", "method_not_allowed"


class ConflictError(GatewayError):
    status, error_type, code = 409, "invalid_request_error", "conflict"


class BodyTooLargeError(GatewayError):
    status, error_type, code = 413, "invalid_request_error", "body_too_large"


class RateLimitError(GatewayError):
    status, error_type, code = 429, "rate_limit_error", "rate_limit_exceeded"


class UpstreamError(GatewayError):
    status, error_type, code = 502, "server_error", "upstream_error"


class NoHealthyBackendError(GatewayError):
    status, error_type, code = 503, "server_error", "no_healthy_backend"


class ModelNotReadyError(NoHealthyBackendError):
    """The fleet agent's engine for the model is not ready: still loading past the load timeout
    (a restart pending among the causes), or draining. The message names the model, its host and
    what it was waiting for."""

    code = "model_not_ready"


class ModelFailedError(ModelNotReadyError):
    """The fleet agent's engine for the model failed (it could not start, or crashed past its
    restart limit) and nothing starts it again by itself: the message names the host, the reason
    and what to do."""

    code = "model_failed"


class UpstreamTimeoutError(GatewayError):
    status, error_type, code = 504, "server_error", "upstream_timeout"
