"""Fetching a GGUF file into a folder: verified, resumable, whole or not at all.

    result = fetch_model(FetchRequest(source="https://host/m.gguf", directory=Path("/srv/models")),
                         progress)

The bytes go to `NAME.part` beside the target. When the source ends, the file must start with
the GGUF magic and match its sha256 (from `sha256=`, else a `SOURCE.sha256` sidecar); only then
is `NAME.part` renamed to `NAME` (one atomic rename on the same file system). A mismatch deletes
`NAME.part` and leaves any `NAME` the user had as it was.

An http(s) transfer that stops (the server drops the connection, a read times out) keeps
`NAME.part`; the next attempt asks for the rest with `Range: bytes=N-`. A server that answers
the whole file instead (200, ignoring Range) is taken from the start again, the part truncated.
Up to `retries` such resumes happen within one run; after that the command stops and the same
command resumes later. A local source is copied the same way (resuming from `NAME.part` too).

HTTP goes through aiohttp (a dependency of the gateway already): it streams the body in chunks,
gives separate connect and read timeouts, and reads the user's proxy settings (HTTP(S)_PROXY,
NO_PROXY) with `trust_env`. Wavefleet fetches nothing by itself: this runs only when asked to.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol
from urllib.parse import unquote

import aiohttp
from yarl import URL

from wavefleet import __version__
from wavefleet.errors import ChecksumError, ModelError, UsageError
from wavefleet.plan.gguf_file import GGUF_MAGIC

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = [
    "CHUNK_BYTES",
    "FetchProgress",
    "FetchRequest",
    "FetchResult",
    "display_url",
    "fetch_model",
    "is_url",
    "parse_sha256",
]

CHUNK_BYTES = 1 << 20
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
# Waits between resumes of a transfer that stopped: short at first, then longer (seconds).
_BACKOFF_S = (0.5, 2.0, 5.0, 10.0)


class FetchProgress(Protocol):
    """Where a fetch reports its bytes and what it decides on the way."""

    def update(self, done: int, total: int | None) -> None:
        """`done` bytes of `total` (None: the server did not say) are in `NAME.part`."""

    def say(self, text: str) -> None:
        """A sentence for the person: a resume, a restart, a verification."""


@dataclass(frozen=True, kw_only=True)
class FetchRequest:
    """What to fetch, where to, and how it is verified."""

    source: str  # a local path, or an http:// or https:// URL
    directory: Path
    name: str | None = None  # the file name in `directory`; None: the source's own
    sha256: str | None = None  # expected digest; None: the SOURCE.sha256 sidecar
    verify: bool = True  # False: take the file without a checksum (--no-verify)
    force: bool = False  # replace a NAME that exists with other content
    retries: int = 3  # resumes of a stopped transfer within one run
    read_timeout_s: float = 60.0
    connect_timeout_s: float = 30.0


@dataclass(frozen=True, kw_only=True)
class FetchResult:
    """What the fetch did, with the numbers an audit row keeps."""

    path: Path
    source: str  # as shown: a URL without credentials or query
    bytes: int
    sha256: str
    checksum_from: str  # "--sha256", the sidecar's location, or "none (--no-verify)"
    resumed_from: int  # bytes `NAME.part` already held when the run began
    restarts: int  # times the source was taken from the start again (Range ignored, source changed)
    resumes: int  # times a stopped transfer was resumed within this run
    seconds: float
    already_there: bool  # NAME held the verified file already; nothing was fetched


class _Stopped(Exception):
    """A transfer that ended early and may be resumed after a wait (never leaves this module)."""


class _Again(Exception):
    """The source must be taken from the start again, at once (never leaves this module)."""


# Restarts from byte 0 within one run before giving up: a source that keeps changing under us.
_MAX_RESTARTS = 3


def is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def display_url(source: str) -> str:
    """`source` fit for logs and audit rows: a URL without user, password, query or fragment
    (signed download URLs carry their token in the query)."""
    if not is_url(source):
        return source
    try:
        url = URL(source)
    except ValueError:
        return source.split("?", 1)[0]
    return str(url.with_user(None).with_password(None).with_query(None).with_fragment(None))


def parse_sha256(text: str, where: str) -> str:
    """The sha256 in `text`: a bare hex digest or `sha256sum`'s `DIGEST  NAME` line."""
    words = text.split()
    if not words or not _HEX64.match(words[0]):
        raise UsageError(
            f"{where} holds no sha256 (64 hex digits, as `sha256sum FILE` prints); "
            "give --sha256 HEX or fix the file"
        )
    return words[0].lower()


def fetch_model(request: FetchRequest, progress: FetchProgress) -> FetchResult:
    """Fetch `request.source` into `request.directory`; see the module's docstring."""
    name = _target_name(request)
    directory = request.directory.expanduser().absolute()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --to {directory}: {exc.strerror}") from exc
    target = directory / name
    if is_url(request.source):
        return asyncio.run(_fetch_url(request, target, progress))
    return _fetch_local(request, target, progress)


# --- names, checksums, the target that may exist ---------------------------------------------------


def _target_name(request: FetchRequest) -> str:
    if request.name is not None:
        name = request.name
    elif is_url(request.source):
        path = request.source.split("?", 1)[0].split("#", 1)[0]
        name = unquote(path.rstrip("/").rsplit("/", 1)[-1]) if path.count("/") > 2 else ""
        if not name or path.endswith("/"):
            raise UsageError(f"{display_url(request.source)} names no file; give --name NAME.gguf")
    else:
        name = Path(request.source).name
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise UsageError(f"{name!r} is not a file name; give --name NAME.gguf")
    return name


def _expected_from_option(request: FetchRequest) -> str | None:
    if request.sha256 is None:
        return None
    if not _HEX64.match(request.sha256.strip()):
        raise UsageError(
            f"--sha256 {request.sha256!r} is not a sha256 (64 hex digits, as `sha256sum FILE` prints)"
        )
    return request.sha256.strip().lower()


def _no_checksum(source: str, sidecar: str) -> UsageError:
    return UsageError(
        f"no checksum for {source}: no --sha256 and no {sidecar}; give --sha256 HEX (Hugging Face "
        "shows each file's SHA256 on its page), put the digest in that sidecar, or pass --no-verify "
        "to take the file unverified"
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _existing(target: Path, expected: str | None, request: FetchRequest, progress: FetchProgress) -> bool:
    """True when `target` already holds the expected file; refuses to replace other content
    unless `force`."""
    if not target.exists():
        return False
    if not target.is_file():
        raise UsageError(f"{target} exists and is not a file; choose another --name or --to")
    if expected is not None:
        progress.say(f"{target.name} exists: checking its sha256")
        found = _file_sha256(target)
        if found == expected:
            return True
        what = f"other content (sha256 {found})"
    else:
        what = "a file of the same name (unverified: --no-verify)"
    if not request.force:
        raise UsageError(
            f"{target} exists with {what}; pass --force to replace it with the verified download, "
            "or choose another --name or --to"
        )
    progress.say(f"{target.name} exists with {what}: it is replaced once the new file verifies")
    return False


# --- the .part file ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _part_file(target: Path) -> Iterator[tuple[Path, IO[bytes]]]:
    """`NAME.part` opened for appending and locked against a second fetch of the same file; removed
    again when the run ends with it empty (nothing to resume)."""
    part = target.with_name(target.name + ".part")
    handle = part.open("ab")
    locked = False
    try:
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): no lock
            pass
        except OSError as exc:
            raise UsageError(
                f"another `wave model fetch` is writing {part}; wait for it, or stop it first"
            ) from exc
        locked = True
        yield part, handle
    finally:
        with contextlib.suppress(OSError):
            if locked and part.is_file() and part.stat().st_size == 0:
                part.unlink()
        handle.close()


def _hash_part(part: Path, progress: FetchProgress) -> tuple[_Hash, int]:
    """A sha256 fed with what `part` already holds, and its size (the resume offset)."""
    digest = hashlib.sha256()
    size = part.stat().st_size
    if size:
        progress.say(f"{part.name} holds {size:,} bytes from an earlier run: resuming after them")
        with part.open("rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
                digest.update(chunk)
    return digest, size


def _truncate(handle: IO[bytes]) -> None:
    handle.seek(0)
    handle.truncate(0)


def _write(handle: IO[bytes], chunk: bytes, part: Path, done: int) -> None:
    try:
        handle.write(chunk)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ModelError(
                f"disk full writing {part} after {done:,} bytes; free space in {part.parent} and run "
                f"the same command again: it resumes from the {done:,} bytes {part.name} keeps"
            ) from exc
        raise ModelError(f"cannot write {part}: {exc.strerror}") from exc


def _room_for(part: Path, remaining: int | None) -> None:
    if remaining is None:
        return
    free = shutil.disk_usage(part.parent).free
    if remaining > free:
        raise ModelError(
            f"not enough space in {part.parent}: the file needs {remaining:,} more bytes and "
            f"{free:,} are free; free space there or choose another --to"
        )


class _Magic:
    """Checks the first four bytes of the file as they arrive."""

    def __init__(self, source: str, part: Path) -> None:
        self.source, self.part, self.head = source, part, b""

    def feed(self, offset: int, chunk: bytes) -> None:
        if offset >= len(GGUF_MAGIC) or len(self.head) >= len(GGUF_MAGIC):
            return
        self.head += chunk[: len(GGUF_MAGIC) - len(self.head)]
        if len(self.head) == len(GGUF_MAGIC) and self.head != GGUF_MAGIC:
            raise ChecksumError(
                f"{self.source} is not a GGUF file (it starts with {self.head!r}, not b'GGUF'); "
                "a web page starts with b'<!DO' or b'<htm': use the file's download URL (on Hugging "
                f"Face its /resolve/ URL, not /blob/); {self.part.name} was deleted"
            )


def _finish(
    part: Path, handle: IO[bytes], target: Path, digest: str, expected: str | None, source: str
) -> None:
    """Verify the whole `part` and rename it to `target`; on a mismatch delete `part` only."""
    handle.flush()
    os.fsync(handle.fileno())
    with part.open("rb") as check:
        head = check.read(len(GGUF_MAGIC))
    if head != GGUF_MAGIC:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"{source} is not a GGUF file (it starts with {head!r}, not b'GGUF'); {part.name} was deleted"
        )
    if expected is not None and digest != expected:
        part.unlink(missing_ok=True)
        kept = f"; {target.name} is as it was" if target.exists() else ""
        raise ChecksumError(
            f"sha256 mismatch for {source}: expected {expected}, got {digest}; {part.name} was "
            f"deleted{kept}. Check the checksum's source; run again to fetch it from the start"
        )
    os.replace(part, target)
    with contextlib.suppress(OSError):  # a directory fsync makes the rename durable where supported
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- local files ------------------------------------------------------------------------------------


def _fetch_local(request: FetchRequest, target: Path, progress: FetchProgress) -> FetchResult:
    source = Path(request.source).expanduser()
    if not source.is_file():
        raise UsageError(f"{source}: no such file; give a local path or an http(s):// URL")
    expected = _expected_from_option(request)
    checksum_from = "--sha256"
    if expected is None and request.verify:
        sidecar = source.with_name(source.name + ".sha256")
        if not sidecar.is_file():
            raise _no_checksum(str(source), str(sidecar))
        expected = parse_sha256(sidecar.read_text(errors="replace"), str(sidecar))
        checksum_from = str(sidecar)
    if not request.verify and expected is None:
        checksum_from = "none (--no-verify)"
    if source.resolve() == target.resolve():
        raise UsageError(f"{source} is the target itself; choose another --to or --name")
    start = time.monotonic()
    if _existing(target, expected, request, progress):
        return _already(target, str(source), expected or "", checksum_from, start)
    total = source.stat().st_size
    with _part_file(target) as (part, handle):
        digest, offset = _hash_part(part, progress)
        resumed_from, restarts = offset, 0
        if offset > total:
            progress.say(f"{part.name} is longer than {source}: starting over")
            _truncate(handle)
            digest, offset, restarts = hashlib.sha256(), 0, 1
        _room_for(part, total - offset)
        magic = _Magic(str(source), part)
        try:
            with source.open("rb") as reader:
                reader.seek(offset)
                progress.update(offset, total)
                for chunk in iter(lambda: reader.read(CHUNK_BYTES), b""):
                    magic.feed(offset, chunk)
                    _write(handle, chunk, part, offset)
                    digest.update(chunk)
                    offset += len(chunk)
                    progress.update(offset, total)
        except ChecksumError:
            part.unlink(missing_ok=True)
            raise
        except OSError as exc:
            raise ModelError(f"cannot read {source}: {exc.strerror}") from exc
        sha = digest.hexdigest()
        _finish(part, handle, target, sha, expected, str(source))
    return FetchResult(
        path=target,
        source=str(source),
        bytes=offset,
        sha256=sha,
        checksum_from=checksum_from,
        resumed_from=resumed_from,
        restarts=restarts,
        resumes=0,
        seconds=time.monotonic() - start,
        already_there=False,
    )


def _already(target: Path, source: str, sha: str, checksum_from: str, start: float) -> FetchResult:
    return FetchResult(
        path=target,
        source=source,
        bytes=target.stat().st_size,
        sha256=sha,
        checksum_from=checksum_from,
        resumed_from=0,
        restarts=0,
        resumes=0,
        seconds=time.monotonic() - start,
        already_there=True,
    )


# --- HTTP -------------------------------------------------------------------------------------------


_CONTENT_RANGE = re.compile(r"^bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)$")


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) from a Content-Range header; None where it does not say."""
    found = _CONTENT_RANGE.match((value or "").strip())
    if not found:
        return None, None
    first = int(found[1]) if found[1] is not None else None
    total = int(found[3]) if found[3] != "*" else None
    return first, total


async def _fetch_url(request: FetchRequest, target: Path, progress: FetchProgress) -> FetchResult:
    shown = display_url(request.source)
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=request.connect_timeout_s, sock_read=request.read_timeout_s
    )
    headers = {"User-Agent": f"wavefleet/{__version__} (wave model fetch)", "Accept-Encoding": "identity"}
    start = time.monotonic()
    async with aiohttp.ClientSession(
        timeout=timeout, headers=headers, trust_env=True, auto_decompress=False
    ) as session:
        expected = _expected_from_option(request)
        checksum_from = "--sha256"
        if expected is None and request.verify:
            sidecar = request.source.split("?", 1)[0] + ".sha256"
            expected = await _sidecar(session, sidecar, shown)
            checksum_from = display_url(sidecar)
        if not request.verify and expected is None:
            checksum_from = "none (--no-verify)"
        if _existing(target, expected, request, progress):
            return _already(target, shown, expected or "", checksum_from, start)
        with _part_file(target) as (part, handle):
            digest, offset = _hash_part(part, progress)
            state = _Transfer(digest=digest, offset=offset, resumed_from=offset)
            attempt = 0
            while True:
                try:
                    await _attempt(session, request.source, shown, part, handle, state, progress)
                    break
                except _Again as again:
                    if state.restarts > _MAX_RESTARTS:
                        raise ModelError(
                            f"{shown} changed under the transfer {state.restarts} times ({again}); "
                            "try again later"
                        ) from again
                except _Stopped as stop:
                    if attempt >= request.retries:
                        raise ModelError(
                            f"the transfer of {shown} stopped at {state.offset:,}"
                            f"{f' of {state.total:,}' if state.total else ''} bytes ({stop}) after "
                            f"{attempt + 1} attempt{'s' if attempt else ''}; {part.name} keeps them: run "
                            "the same command again to resume"
                        ) from stop
                    wait = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
                    progress.say(
                        f"the transfer stopped at {state.offset:,} bytes ({stop}); resuming in {wait:g} s"
                    )
                    attempt += 1
                    state.resumes += 1
                    await asyncio.sleep(wait)
            sha = state.digest.hexdigest()
            _finish(part, handle, target, sha, expected, shown)
    return FetchResult(
        path=target,
        source=shown,
        bytes=state.offset,
        sha256=sha,
        checksum_from=checksum_from,
        resumed_from=state.resumed_from,
        restarts=state.restarts,
        resumes=state.resumes,
        seconds=time.monotonic() - start,
        already_there=False,
    )


@dataclass(kw_only=True)
class _Transfer:
    digest: _Hash
    offset: int
    resumed_from: int
    total: int | None = None
    restarts: int = 0
    resumes: int = 0


async def _sidecar(session: aiohttp.ClientSession, url: str, shown: str) -> str:
    try:
        async with session.get(url) as response:
            if response.status in (404, 410):
                raise _no_checksum(shown, display_url(url))
            if response.status >= 400:
                raise ModelError(
                    f"the checksum sidecar {display_url(url)} answered HTTP {response.status} "
                    f"{response.reason or ''}; give --sha256 HEX instead"
                )
            text = (await response.content.read(4096)).decode("utf-8", "replace")
    except aiohttp.ClientError as exc:
        raise _connection_error(exc, display_url(url)) from exc
    except TimeoutError as exc:
        raise ModelError(f"{display_url(url)} did not answer in time; check the URL and the network") from exc
    return parse_sha256(text, display_url(url))


def _connection_error(exc: Exception, shown: str) -> ModelError:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return ModelError(f"{shown}: the server's TLS certificate is not trusted ({exc.certificate_error})")
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.strerror or str(exc.os_error)
        return ModelError(
            f"cannot connect to {exc.host}:{exc.port} for {shown} ({reason}); check the URL, that "
            "the server runs, and that this machine reaches it"
        )
    if isinstance(exc, aiohttp.InvalidURL):
        return ModelError(f"{shown} is not a valid URL")
    if isinstance(exc, aiohttp.TooManyRedirects):
        return ModelError(f"{shown} redirects too many times; use the file's final download URL")
    return ModelError(f"{shown}: {type(exc).__name__}: {exc}")


async def _attempt(
    session: aiohttp.ClientSession,
    url: str,
    shown: str,
    part: Path,
    handle: IO[bytes],
    state: _Transfer,
    progress: FetchProgress,
) -> None:
    """One request for the rest of the file; raises _Stopped when it ends early, _Again when the
    file must be taken from the start."""
    asked = state.offset
    headers = {"Range": f"bytes={asked}-"} if asked else {}
    try:
        async with session.get(url, headers=headers) as response:
            if response.status == 416 and asked:
                _, total = _content_range(response.headers.get("Content-Range"))
                if total == asked:
                    state.total = total
                    progress.update(asked, total)
                    return  # the part was whole already
                progress.say(f"the server has no byte {asked:,} of {shown}: starting over")
                _restart(handle, state)
                raise _Again("the part was longer than the file")
            if response.status in (404, 410):
                raise ModelError(
                    f"{shown} was not found (HTTP {response.status}); check the URL "
                    "(on Hugging Face: the repository, the branch and the file name)"
                )
            if response.status in (401, 403):
                raise ModelError(
                    f"{shown} refused the download (HTTP {response.status}); a gated or private file "
                    "needs to be fetched with the credentials your browser has, then given as a path"
                )
            if response.status >= 400:
                raise ModelError(f"{shown} answered HTTP {response.status} {response.reason or ''}".rstrip())
            if response.status == 206:
                first, total = _content_range(response.headers.get("Content-Range"))
                if first != asked:
                    progress.say(f"the server sent bytes from {first} instead of {asked}: starting over")
                    _restart(handle, state)
                    raise _Again("the server answered another range")
                state.total = total
            else:
                if asked:
                    progress.say(
                        f"the server ignores Range requests: starting {shown} over "
                        f"(the {asked:,} bytes kept are dropped)"
                    )
                    _restart(handle, state)
                state.total = response.content_length
            _room_for(part, None if state.total is None else state.total - state.offset)
            progress.update(state.offset, state.total)
            magic = _Magic(shown, part)
            try:
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    magic.feed(state.offset, chunk)
                    _write(handle, chunk, part, state.offset)
                    state.digest.update(chunk)
                    state.offset += len(chunk)
                    progress.update(state.offset, state.total)
            except ChecksumError:
                handle.close()
                part.unlink(missing_ok=True)
                raise
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        # a server that cannot be reached at all is an error; one that goes away mid-file, a pause
        if isinstance(exc, aiohttp.ClientConnectorError) and not state.resumes:
            raise _connection_error(exc, shown) from exc
        raise _Stopped(_reason(exc)) from exc
    except TimeoutError as exc:
        if isinstance(exc, aiohttp.ConnectionTimeoutError) and not state.resumes:
            raise ModelError(
                f"{shown}: no connection within {int(session.timeout.sock_connect or 0)} s; check the "
                "URL, the network and the proxy settings (HTTPS_PROXY, NO_PROXY)"
            ) from exc
        raise _Stopped(f"no data for {int(session.timeout.sock_read or 0)} s") from exc
    except aiohttp.ClientError as exc:
        raise _connection_error(exc, shown) from exc
    if state.total is not None and state.offset < state.total:
        raise _Stopped("the connection closed early")


def _restart(handle: IO[bytes], state: _Transfer) -> None:
    _truncate(handle)
    state.digest, state.offset = hashlib.sha256(), 0
    state.restarts += 1


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.split(". ", 1)[0][:120]
