"""One HTTP client for every download: pooled, retried, resumed, capped, verified.

A single sync ``httpx.Client`` is shared by all threads (docs/decisions.md, "Downloads": a pool of
~8 threads over one client was the fastest Python variant here; HTTP/2 was slower, so it stays off).
Proxies come from ``http_proxy``/``https_proxy``/``no_proxy`` (httpx ``trust_env``); ``file://``
URLs are read directly. Integrity comes from the signed chain (size + SHA256 from the index), so
plain http mirrors are fine and every body is hashed while it streams.

Fault handling follows apt's acquire methods (HAZARDS rows 34–45):

* transient faults (connect refused, DNS, timeouts, resets, short reads, 5xx, 408, 429) are retried
  with exponential backoff (1, 2, 4 s, cap 30 s) plus jitter; a ``Retry-After`` (seconds or an
  HTTP date) replaces the backoff, capped at ``max_retry_wait`` (30 s), and each such wait uses
  up a retry like any other; one over 300 s is an outage and fails at once;
* a body that breaks off is resumed with ``Range`` + ``If-Range`` from the bytes already kept
  (their hash continues): a 206 whose ``Content-Range`` starts there continues the body, a 200
  (the server ignores Range, or If-Range says the file changed) or a 206 elsewhere starts it
  over; the SHA256 is always of the whole file;
* no body may grow past the size the signed index promises: a larger ``Content-Length`` is
  refused before reading, an endless body is cut at the expected size;
* redirects are followed by hand: control characters in ``Location`` (CVE-2019-3462), https→http,
  other schemes, loops and more than ``max_redirects`` hops are refused;
* each read has an inactivity timeout (``timeout``); a body slower than ``min_speed`` bytes/s
  over a whole ``timeout`` window counts as stalled (curl's ``--speed-limit``: a drip of one
  byte per 20 s never trips a 30 s read timeout); an overall ``deadline`` is optional.

Errors: :class:`~rootstrap.errors.DownloadError` (with :class:`HttpStatusError` carrying
``.status`` for HTTP statuses) and :class:`~rootstrap.errors.IntegrityError`, each with
``subject=url``.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import fcntl
import hashlib
import logging
import os
import random
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Final
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from rootstrap.errors import DownloadError, IntegrityError, Interrupted, ResourceError

log = logging.getLogger(__name__)

__all__ = ["Http", "HttpStatusError", "file_matches", "human_size"]

CHUNK: Final = 256 * 1024
BACKOFF_CAP: Final = 30.0  # seconds; apt's acquire retry delay is capped the same way
MAX_RETRY_AFTER: Final = 300.0  # a longer Retry-After is an outage, not a hiccup
PROGRESS_RESET: Final = 64 * 1024  # an attempt that delivered this much does not use up a retry
# Statuses worth another try (RFC 9110 §15.5.9 408, RFC 6585 §4 429, 5xx).
RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})


class HttpStatusError(DownloadError):
    """An HTTP status other than success; ``status`` is its code (404: not on this mirror)."""

    def __init__(
        self, message: str, *, status: int, subject: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, subject=subject, hint=hint)
        self.status = status


class _Transient(Exception):
    """A fault worth retrying; ``wait`` is the delay the server asked for (Retry-After), None
    when it did not say (then our own backoff applies)."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


def human_size(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def file_matches(path: Path, size: int, sha256: str) -> bool:
    """Whether PATH is a regular file of SIZE bytes whose SHA256 is SHA256. Costs one full read."""
    try:
        # O_NOFOLLOW: a symlink planted in the cache is never "verified" (it is replaced).
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return False
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return digest == sha256


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta-seconds or HTTP-date; RFC 9110 §10.2.3);
    None when absent or unreadable (our own backoff then)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None  # not an HTTP date (those are GMT): a garbled header
    return max(0.0, when.timestamp() - time.time())


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _check_location(url: str, location_raw: bytes) -> str:
    """The absolute redirect target, or DownloadError when it is unsafe (HAZARDS 41, 42)."""
    location = location_raw.decode("latin-1")
    # CVE-2019-3462: apt unquoted Location and wrote it into its own protocol, so "%0a" injected
    # fields. We do not unquote, but a target that carries control characters, raw or encoded,
    # is never a real mirror path.
    if _has_control(location) or _has_control(unquote(location)):
        raise DownloadError("redirect target contains control characters", subject=url)
    target = urljoin(url, location.strip())
    old, new = urlsplit(url).scheme, urlsplit(target).scheme
    if new not in ("http", "https"):
        raise DownloadError(f"redirect to unsupported scheme {new or '(none)'!r}", subject=url)
    if old == "https" and new == "http":
        # apt refuses this downgrade (test-apt-https-no-redirect): the user asked for TLS.
        raise DownloadError(f"refusing redirect from https to http ({target})", subject=url)
    return target


class _Progress:
    """Per-call state of one body: what was received, what it hashes to, how to resume it."""

    def __init__(self, url: str, size: int | None, sha256: str | None, cap: int) -> None:
        self.url = url
        self.size = size
        self.sha256 = sha256
        self.cap = cap  # the most bytes this body may have
        self.hasher = hashlib.sha256()
        self.received = 0
        self.validator: str | None = None  # ETag or Last-Modified, for If-Range
        self.restart = False  # the server resumed at the wrong byte: ask for the whole body
        self.stop: threading.Event | None = None  # set by another thread: give up now

    def check_final(self) -> None:
        if self.size is not None and self.received != self.size:
            raise IntegrityError(
                f"size mismatch: expected {self.size} bytes, received {self.received}",
                subject=self.url,
                hint="the mirror may be mid-sync or serving a different file; try another mirror",
            )
        if self.sha256 is not None:
            got = self.hasher.hexdigest()
            if got != self.sha256:
                raise IntegrityError(
                    f"SHA256 mismatch: expected {self.sha256}, received {got}",
                    subject=self.url,
                    hint="the mirror may be mid-sync, broken or tampered with; try another mirror",
                )


class Http:
    """A shared, thread-safe downloader. Create one per run; ``close()`` (or ``with``) at the end.

    ``retries`` is the number of further tries after the first (so 3 means up to 4 requests,
    waiting ``backoff`` × 1, 2, 4 s between them, capped at 30 s, or what a ``Retry-After``
    asks, capped at ``max_retry_wait``). ``timeout`` bounds connecting
    and each read (an inactivity timeout, not a total) and is the window over which a body must
    average ``min_speed`` bytes/s; ``deadline`` optionally bounds one whole call.
    ``max_redirects`` hops are followed, each checked.
    """

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 1.0,
        deadline: float | None = None,
        min_speed: int = 1024,
        max_redirects: int = 10,
        max_retry_wait: float = BACKOFF_CAP,
        user_agent: str = "rootstrap/0.1",
    ) -> None:
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_retry_wait = max_retry_wait
        self.deadline = deadline
        self.min_speed = min_speed
        self.max_redirects = max_redirects
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, pool=None),
            follow_redirects=False,  # every hop is checked by _check_location
            trust_env=True,  # http_proxy / https_proxy / no_proxy
            verify=_ssl_context(),
            http2=False,  # measured slower here (docs/decisions.md, Downloads)
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            headers={"User-Agent": user_agent, "Accept-Encoding": "identity"},
        )
        self._closed = False
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close pooled connections. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._client.close()

    def __enter__(self) -> Http:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- public API -----------------------------------------------------------------------------

    def get(self, url: str, *, max_size: int) -> bytes:
        """The whole body of URL (a small file: InRelease, a Release), at most MAX_SIZE bytes.

        Retries transient faults; a 404 raises :class:`HttpStatusError` with ``status == 404``;
        a body over MAX_SIZE raises DownloadError without reading more than MAX_SIZE bytes.
        """
        return b"".join(self.stream(url, size=None, sha256=None, max_size=max_size))

    def stream(
        self, url: str, *, size: int | None, sha256: str | None, max_size: int
    ) -> Iterator[bytes]:
        """Yield URL's body in chunks, verifying it against SIZE and SHA256 (either may be None).

        Never yields more than SIZE (or MAX_SIZE) bytes: a larger ``Content-Length`` is refused
        before reading, extra bytes raise IntegrityError. A body that breaks off is resumed with
        ``Range`` (bytes already yielded are not yielded again). After the last chunk a size or
        hash mismatch raises IntegrityError naming both hashes. Memory: one chunk.
        """
        if size is not None and size > max_size:
            raise IntegrityError(
                f"expected size {size} bytes is over the {max_size}-byte cap", subject=url
            )
        progress = _Progress(url, size, sha256, size if size is not None else max_size)
        if url.startswith("file:"):
            yield from self._file_body(progress)
        else:
            yield from self._http_body(progress, start=0, sink=None)
        progress.check_final()

    def download(
        self,
        url: str,
        dest: Path,
        *,
        size: int,
        sha256: str,
        stop: threading.Event | None = None,
    ) -> None:
        """Fetch URL to DEST atomically: ``DEST.partial`` is written, verified, renamed.

        A ``.partial`` left by an earlier run is resumed with ``Range``; wrong or oversized
        partial data is discarded (HAZARDS 39, 40). Concurrent callers (threads or processes)
        for one DEST are serialised by a lock on the partial file; one downloads, the others
        find DEST complete. On ENOSPC the partial file is removed (HAZARDS 107). DEST is never
        seen incomplete. Setting STOP makes it raise Interrupted at the next chunk (the partial
        file is kept for a later resume). Cost: one pass over the body, plus a re-hash of any
        resumed prefix.
        """
        partial = dest.with_name(dest.name + ".partial")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd = _lock_partial(partial)
        except OSError as exc:
            raise _write_error(exc, partial, url) from exc
        try:
            # Someone may have finished DEST while we waited for the lock.
            if dest.exists() and file_matches(dest, size, sha256):
                os.unlink(partial)
                return
            with os.fdopen(os.dup(fd), "r+b") as f:
                self._download_locked(url, f, partial, dest, size, sha256, stop)
        finally:
            os.close(fd)

    # -- download internals ---------------------------------------------------------------------

    def _download_locked(
        self,
        url: str,
        f: IO[bytes],
        partial: Path,
        dest: Path,
        size: int,
        sha256: str,
        stop: threading.Event | None,
    ) -> None:
        have = os.fstat(f.fileno()).st_size
        for resumed in (True, False):
            progress = _Progress(url, size, sha256, size)
            progress.stop = stop
            if not resumed or have > size:
                have = 0  # HAZARDS 40: a partial file larger than the real one restarts
            start = self._prefix(f, progress, have)
            try:
                if start < size:
                    self._fetch_into(f, progress, start, partial)
                progress.check_final()
            except IntegrityError:
                if start > 0 and resumed:
                    # The old partial data may be the culprit: discard it, fetch from zero once.
                    log.debug("%s: resumed file failed verification; refetching from zero", url)
                    continue
                _remove(partial)
                raise
            except ResourceError:
                _remove(partial)  # HAZARDS 107: no partial file is left on a full disk
                raise
            except BaseException as exc:
                # A prefix from a network fault is kept so the next run resumes it (apt's
                # partial/); an empty one, or one the server disowned (404...), is not.
                with contextlib.suppress(OSError):
                    f.flush()
                if isinstance(exc, HttpStatusError) or os.fstat(f.fileno()).st_size == 0:
                    _remove(partial)
                raise
            # No fsync: a file torn by a crash fails the re-verification every use starts with.
            os.rename(partial, dest)
            return

    def _prefix(self, f: IO[bytes], progress: _Progress, have: int) -> int:
        """Hash the first HAVE bytes of F into PROGRESS and truncate F there; return HAVE."""
        f.seek(0)
        if have:
            left = have
            while left:
                block = f.read(min(CHUNK, left))
                if not block:
                    break
                progress.hasher.update(block)
                left -= len(block)
            have -= left
        f.seek(have)
        f.truncate(have)
        progress.received = have
        return have

    def _fetch_into(self, f: IO[bytes], progress: _Progress, start: int, partial: Path) -> None:
        url = progress.url
        try:
            if url.startswith("file:"):
                if start:
                    f.seek(0)
                    f.truncate(0)
                    progress.hasher = hashlib.sha256()
                    progress.received = 0
                for chunk in self._file_body(progress):
                    f.write(chunk)
            else:
                for chunk in self._http_body(progress, start=start, sink=f):
                    f.write(chunk)
            f.flush()
        except OSError as exc:
            raise _write_error(exc, partial, url) from exc

    # -- bodies ---------------------------------------------------------------------------------

    def _file_body(self, progress: _Progress) -> Iterator[bytes]:
        """A ``file://`` URL's bytes, with the same caps and errors as HTTP."""
        url = progress.url
        path = unquote(urlsplit(url).path)
        try:
            f = open(path, "rb")
        except FileNotFoundError as exc:
            raise HttpStatusError("not found", status=404, subject=url) from exc
        except OSError as exc:
            raise DownloadError(f"cannot read: {exc.strerror}", subject=url) from exc
        with f:
            st = os.fstat(f.fileno())
            if progress.size is not None and st.st_size > progress.size:
                raise IntegrityError(
                    f"file is {st.st_size} bytes, expected {progress.size}", subject=url
                )
            if st.st_size > progress.cap:
                raise DownloadError(
                    f"file is {st.st_size} bytes, over the {progress.cap}-byte cap", subject=url
                )
            while block := f.read(min(CHUNK, progress.cap - progress.received + 1)):
                self._account(progress, block)
                yield block
                if progress.received >= progress.cap:
                    if f.read(1):
                        self._overflow(progress)
                    break

    def _account(self, progress: _Progress, block: bytes) -> None:
        if progress.stop is not None and progress.stop.is_set():
            raise Interrupted("download stopped", subject=progress.url)
        if progress.received + len(block) > progress.cap:
            self._overflow(progress)
        progress.hasher.update(block)
        progress.received += len(block)

    @staticmethod
    def _overflow(progress: _Progress) -> None:
        if progress.size is not None:
            raise IntegrityError(
                f"server sent more than the expected {progress.size} bytes", subject=progress.url
            )
        raise DownloadError(
            f"response is larger than the {progress.cap}-byte cap", subject=progress.url
        )

    def _http_body(
        self, progress: _Progress, *, start: int, sink: IO[bytes] | None
    ) -> Iterator[bytes]:
        """Yield the body from offset START on, retrying and resuming until it is complete.

        SINK, when given, is the file the caller writes to: a server that ignores ``Range``
        makes us rewind it (HAZARDS 40: "a 200 overwrites") instead of skipping bytes.
        """
        url = progress.url
        failures = 0
        began = time.monotonic()
        while True:
            before = progress.received
            try:
                yield from self._one_attempt(progress, sink, began)
                return
            except _Transient as fault:
                if progress.received - before >= PROGRESS_RESET:
                    failures = 0  # it is moving; a flaky link should not exhaust retries
                failures += 1
                if failures > self.retries:
                    tries = failures
                    raise DownloadError(
                        f"{fault.reason} (gave up after {tries} tries)",
                        subject=url,
                        hint="check the network, the proxy settings or try another mirror",
                    ) from fault.__cause__
                if fault.wait is not None:
                    # The server said when (RFC 9110 §10.2.3): that, not our guess, within reason.
                    delay = min(fault.wait, self.max_retry_wait)
                else:
                    delay = min(BACKOFF_CAP, self.backoff * 2 ** (failures - 1))
                delay += random.uniform(0, 0.1 * max(delay, 0.01))
                log.info("%s: %s; retrying in %.1f s", url, fault.reason, delay)
                if self.deadline is not None and time.monotonic() - began + delay > self.deadline:
                    raise DownloadError(
                        f"{fault.reason}; no time left before the {self.deadline:g} s deadline",
                        subject=url,
                    ) from fault.__cause__
                time.sleep(delay)

    def _one_attempt(
        self, progress: _Progress, sink: IO[bytes] | None, began: float
    ) -> Iterator[bytes]:
        url = progress.url
        headers = {}
        if progress.received and not progress.restart:
            headers["Range"] = f"bytes={progress.received}-"
            if progress.validator:
                # RFC 9110 §13.1.5: the server sends the whole file (200) if it changed.
                headers["If-Range"] = progress.validator
        try:
            response = self._open(url, headers)
        except httpx.TimeoutException as exc:
            raise _Transient(f"timed out after {self.timeout:g} s") from exc
        except httpx.ConnectError as exc:
            raise _Transient(f"cannot connect: {_reason(exc)}") from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise _Transient(f"connection failed: {_reason(exc)}") from exc
        except httpx.HTTPError as exc:
            raise DownloadError(f"request failed: {_reason(exc)}", subject=url) from exc
        try:
            skip = self._accept(progress, response, sink)
            if skip < 0:
                return  # 416 on resume: nothing to read, the final check decides
            declared = response.headers.get("Content-Length")
            window_start, window_bytes = time.monotonic(), 0
            try:
                for chunk in response.iter_raw():
                    now = time.monotonic()
                    if self.deadline is not None and now - began > self.deadline:
                        raise DownloadError(
                            f"download took longer than the {self.deadline:g} s deadline",
                            subject=url,
                        )
                    window_bytes += len(chunk)
                    if now - window_start >= self.timeout:
                        if window_bytes < self.min_speed * (now - window_start):
                            raise _Transient(
                                f"slower than {self.min_speed} bytes/s for {self.timeout:g} s"
                            )
                        window_start, window_bytes = now, 0
                    if skip:
                        cut = min(skip, len(chunk))
                        skip -= cut
                        chunk = chunk[cut:]
                        if not chunk:
                            continue
                    self._account(progress, chunk)
                    # Reading on past the expected size only to see the body end keeps the
                    # connection reusable; a single byte more raises (endless bodies, row 38).
                    yield chunk
            except httpx.TimeoutException as exc:
                raise _Transient(f"no data received for {self.timeout:g} s") from exc
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                raise _Transient(f"connection closed mid-body: {_reason(exc)}") from exc
            if progress.size is not None and progress.received < progress.size and declared is None:
                # A close-delimited or chunked body that ended early is a short read (HAZARDS 39).
                raise _Transient("connection closed before the end of the body")
        finally:
            response.close()

    def _accept(self, progress: _Progress, response: httpx.Response, sink: IO[bytes] | None) -> int:
        """Check status and headers before the body.

        Returns how many leading body bytes to skip (already yielded), or -1 for "no body"."""
        url = progress.url
        status = response.status_code
        resuming = progress.received > 0
        asked_range = resuming and not progress.restart
        if status == 416 and asked_range:
            # The server's file is not longer than what we have: it is complete or it changed.
            # Only the hash can tell (HAZARDS 40); check_final decides, so read no body.
            return -1
        if status in RETRY_STATUSES:
            wait = _parse_retry_after(response.headers.get("Retry-After"))
            if wait is not None and wait > MAX_RETRY_AFTER:
                raise HttpStatusError(
                    f"HTTP {status}; the server asks to retry after {wait:.0f} s",
                    status=status,
                    subject=url,
                    hint="the mirror is overloaded or down; try again later or another mirror",
                )
            raise _Transient(f"HTTP {status} {response.reason_phrase}".rstrip(), wait=wait)
        if status not in (200, 206):
            hint = None
            if status in (404, 410):
                hint = "the mirror may be mid-sync; try again later or another mirror"
            elif status in (401, 403, 407):
                hint = "does the network or proxy require authentication?"
            raise HttpStatusError(
                f"HTTP {status} {response.reason_phrase}".rstrip(),
                status=status,
                subject=url,
                hint=hint,
            )
        length = response.headers.get("Content-Length")
        declared = int(length) if length and length.isdigit() else None
        skip = 0
        if status == 206 and asked_range:
            first, total = _content_range(response.headers.get("Content-Range"))
            if first != progress.received or (
                progress.size is not None and total is not None and total != progress.size
            ):
                # Not the rest of our file: ask for all of it next time (the bytes kept so far
                # are rewound or skipped then, as for a 200).
                progress.restart = True
                of = f" of a {total}-byte file" if total is not None else ""
                raise _Transient(f"server resumed at byte {first}{of}, not {progress.received}")
        elif resuming:
            # Range ignored (or If-Range said the file changed): the whole body again.
            if sink is not None:
                sink.seek(0)
                sink.truncate(0)
                progress.hasher = hashlib.sha256()
                progress.received = 0
            else:
                skip = progress.received  # already yielded; the final hash decides
            progress.restart = False
        full = None
        if declared is not None:
            full = declared + (progress.received if status == 206 and asked_range else 0)
        if full is not None and full > progress.cap:
            if progress.size is not None:
                raise IntegrityError(
                    f"server announces {full} bytes, expected {progress.size}; refusing",
                    subject=url,
                    hint="the mirror may be serving a different file; try another mirror",
                )
            raise DownloadError(
                f"response of {full} bytes is over the {progress.cap}-byte cap", subject=url
            )
        if progress.size is not None and full is not None and full < progress.size:
            raise IntegrityError(
                f"server announces {full} bytes, expected {progress.size}",
                subject=url,
                hint="the mirror may be mid-sync or serving a different file; try another mirror",
            )
        etag = response.headers.get("ETag")
        validator = etag if etag and not etag.startswith("W/") else None
        progress.validator = validator or response.headers.get("Last-Modified")
        return skip

    def _open(self, url: str, headers: dict[str, str]) -> httpx.Response:
        """Send a GET, following redirects hop by hop; return the final streaming response."""
        seen = {url}
        current = url
        for _hop in range(self.max_redirects + 1):
            request = self._client.build_request("GET", current, headers=headers)
            try:
                response = self._client.send(request, stream=True, follow_redirects=False)
            except httpx.RemoteProtocolError as exc:
                # httpx parses Location even when not following; an unparsable one lands here.
                text = str(exc)
                if "location header" not in text.lower():
                    raise
                if "non-printable" in text:
                    raise DownloadError(
                        "redirect target contains control characters", subject=url
                    ) from exc
                raise DownloadError(f"invalid redirect target: {text}", subject=url) from exc
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            location = response.headers.raw
            raw = next((v for k, v in location if k.lower() == b"location"), None)
            response.close()
            if raw is None:
                raise DownloadError(
                    f"redirect (HTTP {response.status_code}) without a Location", subject=url
                )
            current = _check_location(current, raw)
            if current in seen:
                raise DownloadError(f"redirection loop (back to {current})", subject=url)
            seen.add(current)
            log.debug("%s: redirected to %s", url, current)
        raise DownloadError(
            f"redirection loop (more than {self.max_redirects} redirects)", subject=url
        )


# -- helpers --------------------------------------------------------------------------------------


def _ssl_context() -> ssl.SSLContext:
    """The host's CA store (as apt uses), or SSL_CERT_FILE / SSL_CERT_DIR when set.

    httpx alone would use certifi's bundle and ignore a private CA the host trusts; certifi is
    only the fallback for a host without ca-certificates.
    """
    cafile = os.environ.get("SSL_CERT_FILE") or None
    capath = os.environ.get("SSL_CERT_DIR") or None
    context = ssl.create_default_context(cafile=cafile, capath=capath)
    if not cafile and not capath and not context.cert_store_stats().get("x509_ca"):
        import certifi

        context.load_verify_locations(cafile=certifi.where())
    return context


def _reason(exc: BaseException) -> str:
    """A short reason from an httpx/OS exception (its innermost message)."""
    inner: BaseException = exc
    while inner.__cause__ is not None or inner.__context__ is not None:
        nxt = inner.__cause__ or inner.__context__
        assert nxt is not None
        inner = nxt
    text = str(inner) or str(exc) or type(exc).__name__
    for marker in ("Name or service not known", "Temporary failure in name resolution"):
        if marker in text:
            return "could not resolve host"
    if "Connection refused" in text:
        return "connection refused"
    if "Connection reset" in text:
        return "connection reset"
    return text.split("\n", 1)[0]


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, complete length) of ``Content-Range: bytes A-B/N`` (RFC 9110 §14.4); None
    for a part that is absent, unreadable or ``*``."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, length = value[6:].partition("/")
    first = span.split("-", 1)[0].strip()
    length = length.strip()
    return (int(first) if first.isdigit() else None, int(length) if length.isdigit() else None)


def _lock_partial(partial: Path) -> int:
    """Open and lock PARTIAL exclusively; make sure the locked inode is still the path's.

    A waiter may have opened the file before the holder renamed it to its final name; after
    getting the lock it must not write into what is now the finished file, so it checks that the
    path still names the inode it locked, and starts over if not.
    """
    while True:
        # O_NOFOLLOW: never truncate or write through a symlink planted where the partial goes.
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", str(partial))
            try:
                now = os.stat(partial)
            except FileNotFoundError:
                os.close(fd)
                continue
            if (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino):
                return fd
            os.close(fd)
        except BaseException:
            os.close(fd)
            raise


def _write_error(exc: OSError, path: Path, url: str) -> ResourceError:
    """A clean error for a failed write of PATH (HAZARDS 107 names the file)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ResourceError(
            f"disk full while writing {path}",
            subject=url,
            hint="free some space or point --cache-dir at a larger filesystem",
        )
    return ResourceError(
        f"cannot write {path}: {exc.strerror or exc}",
        subject=url,
        hint="check the permissions of the cache directory (--cache-dir, ROOTSTRAP_CACHE)",
    )


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
