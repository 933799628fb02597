"""A threaded HTTP/1.1 file server on 127.0.0.1 with per-path fault injection.

    from tests.support.server import FaultServer
    with FaultServer(archive.root) as srv:            # ephemeral port, serves the directory
        srv.url                                        # "http://127.0.0.1:PORT"
        srv.fault("*/InRelease", "status", code=503, count=2, headers={"Retry-After": "1"})
        srv.fault("*.deb", "truncate", after=100)      # full Content-Length, closes after 100 B
        srv.fault("*/Packages.xz", "wrong_bytes")       # flips a byte in the middle
        ... run the code under test against srv.url ...
        assert not srv.fetched("*/Packages*")          # nothing fetched after a bad signature
        srv.requests[-1].headers["Range"]

Fault kinds (``pattern`` is an fnmatch glob on the URL path, e.g. ``/dists/*/InRelease`` or
``*.deb``; every kind takes ``count=N`` = only the first N matching requests fail (with
``per_path=True``: the first N requests of each path), and ``delay=seconds`` before answering):

- ``status``: ``code=503``, ``headers={}``, ``body=b""``
- ``wrong_bytes``: ``offset=None`` (middle) or a list of offsets whose bytes are flipped
- ``truncate``: ``after=None`` (half): declares the full Content-Length, sends AFTER bytes, closes
- ``extra_length``: ``extra=1024``: declares size+EXTRA and sends the file plus EXTRA zero
  bytes; ``endless=True``: chunked, the file then zeros forever (until the client hangs up)
- ``slow_drip``: ``interval=0.5``, ``chunk=1``: CHUNK bytes every INTERVAL seconds
- ``redirect``: ``location="http://..."`` sent raw (CR/LF, control bytes kept), ``code=302``
- ``redirect_loop``: ``cycle=3`` (A→A?hop=1→A?hop=2→A), ``cycle=0`` an endless chain
- ``html``: a captive-portal page with 200 (``body=`` to override)
- ``ignore_range``: answers 200 with the whole file to a Range request
- ``shifted_range``: ``shift=1000``: answers a Range request for byte N with 206 from byte
  N-SHIFT (a Content-Range that does not start where the client asked)
- ``reset``: closes the connection with a TCP RST, no response
- ``content``: serves ``data=b"..."`` (200, Range works) instead of the file

``FaultServer(root, tls=True)`` serves HTTPS with a throwaway self-signed certificate
(``srv.ca_file`` to trust it) for HTTPS→HTTP redirect tests. Requests are logged in
``srv.requests`` (``LoggedRequest``: method, path with query, case-insensitive headers, the
fault kind applied or None, when it arrived (``time.monotonic()``), body bytes sent);
``srv.fault(...)`` returns the ``Fault`` (``.hits`` counts its uses); ``srv.clear()`` drops
faults and the log; ``srv.url_for(path_or_file)`` builds URLs.
Two servers on one root (``FaultServer(root)`` twice) make a primary and a fallback mirror.
"""

from __future__ import annotations

import email.message
import email.utils
import fnmatch
import hashlib
import http.server
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FAULT_KINDS", "Fault", "FaultServer", "LoggedRequest"]

FAULT_KINDS = frozenset(
    {
        "status",
        "wrong_bytes",
        "truncate",
        "extra_length",
        "slow_drip",
        "redirect",
        "redirect_loop",
        "html",
        "ignore_range",
        "shifted_range",
        "reset",
        "content",
    }
)

CAPTIVE_PORTAL = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in to the network</title></head>\n"
    b"<body><h1>Welcome to Hotel WiFi</h1><form action='/login'>"
    b"<input name='room'><button>Connect</button></form></body></html>\n"
)


@dataclass
class LoggedRequest:
    """One request as the server received it."""

    method: str
    path: str  # URL path with query, as sent
    headers: email.message.Message  # case-insensitive: headers["range"]
    fault: str | None = None  # the fault kind applied, if any
    time: float = field(default_factory=time.monotonic)  # when it arrived
    sent: int = 0  # body bytes written (headers not counted)


@dataclass
class Fault:
    pattern: str
    kind: str
    params: dict[str, Any]
    count: int | None = None
    hits: int = 0
    per_path: bool = False  # COUNT applies to each path on its own
    hits_by_path: dict[str, int] = field(default_factory=dict)

    def matches(self, path: str) -> bool:
        return fnmatch.fnmatchcase(path, self.pattern) or fnmatch.fnmatchcase(
            path.lstrip("/"), self.pattern
        )

    def take(self, path: str) -> bool:
        """Whether this fault applies to this request of PATH (then it is used up once)."""
        if not self.matches(path):
            return False
        used = self.hits_by_path.get(path, 0) if self.per_path else self.hits
        if self.count is not None and used >= self.count:
            return False
        self.hits += 1
        self.hits_by_path[path] = self.hits_by_path.get(path, 0) + 1
        return True


@dataclass
class _State:
    root: Path
    faults: list[Fault] = field(default_factory=list)
    requests: list[LoggedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    connections: set[socket.socket] = field(default_factory=set)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "rootstrap-test"
    sys_version = ""
    state: _State  # set on the subclass made per server
    _logged: LoggedRequest  # the log entry of the request being answered

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        with self.state.lock:
            self.state.connections.add(self.request)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        with self.state.lock:
            self.state.connections.discard(self.request)

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    # --- helpers ------------------------------------------------------------------------

    def _pick_fault(self, path: str) -> Fault | None:
        with self.state.lock:
            for fault in self.state.faults:
                if fault.take(path):
                    return fault
        return None

    def _body(self, data: bytes) -> None:
        """Write body bytes, counted in this request's log entry."""
        self.wfile.write(data)
        self._logged.sent += len(data)

    def _file(self, urlpath: str) -> Path | None:
        rel = urllib.parse.unquote(urlpath).lstrip("/")
        root = self.state.root.resolve()
        try:
            path = (root / rel).resolve()
            path.relative_to(root)
        except (ValueError, OSError):
            return None
        return path if path.is_file() else None

    def _raw_headers(self, code: int, headers: list[tuple[str, str]]) -> None:
        reason = self.responses.get(code, ("Unknown",))[0]
        out = f"HTTP/1.1 {code} {reason}\r\n"
        out += f"Date: {email.utils.formatdate(usegmt=True)}\r\nServer: rootstrap-test\r\n"
        out += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        # latin-1 with surrogateescape-free text: control characters go out raw on purpose.
        self.wfile.write(out.encode("latin-1"))

    def _simple(
        self,
        code: int,
        body: bytes,
        headers: list[tuple[str, str]] | None = None,
        head: bool = False,
    ) -> None:
        hdrs = [("Content-Length", str(len(body))), *(headers or [])]
        if not any(k.lower() == "content-type" for k, _ in hdrs):
            hdrs.append(("Content-Type", "text/plain"))
        self._raw_headers(code, hdrs)
        if not head:
            self._body(body)

    def _serve(self, head: bool) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        fault = self._pick_fault(path)
        self._logged = LoggedRequest(
            self.command, self.path, self.headers, fault.kind if fault else None
        )
        with self.state.lock:
            self.state.requests.append(self._logged)
        params: dict[str, Any] = dict(fault.params) if fault else {}
        if params.get("delay"):
            self.state.stopping.wait(float(params["delay"]))
        kind = fault.kind if fault else None

        if kind == "reset":
            # SO_LINGER 0: close() sends RST instead of FIN (a "connection reset by peer").
            # Close here: socketserver would shutdown(SHUT_WR) first and send a FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if kind == "status":
            code = int(params.get("code", 503))
            hdrs = list(dict(params.get("headers", {})).items())
            self._simple(code, bytes(params.get("body", b"")), hdrs, head)
            return
        if kind == "redirect":
            hdrs = [("Location", str(params["location"]))]
            self._simple(int(params.get("code", 302)), b"", hdrs, head)
            return
        if kind == "redirect_loop":
            query = urllib.parse.parse_qs(url.query)
            hop = int(query.get("hop", ["0"])[0])
            cycle = int(params.get("cycle", 3))
            nxt = (hop + 1) % cycle if cycle else hop + 1
            # Hop 0 is the URL first asked for, so a cycle really returns to it.
            location = f"{path}?hop={nxt}" if nxt else path
            self._simple(int(params.get("code", 302)), b"", [("Location", location)], head)
            return
        if kind == "html":
            body = bytes(params.get("body", CAPTIVE_PORTAL))
            self._simple(200, body, [("Content-Type", "text/html; charset=utf-8")], head)
            return

        if kind == "content":
            data = bytes(params["data"])
            mtime = 0.0
        else:
            target = self._file(path)
            if target is None:
                self._simple(404, b"not found\n", head=head)
                return
            data = target.read_bytes()
            mtime = target.stat().st_mtime
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        last_modified = email.utils.formatdate(mtime, usegmt=True)
        common = [
            ("Content-Type", "application/octet-stream"),
            ("ETag", etag),
            ("Last-Modified", last_modified),
            ("Accept-Ranges", "bytes"),
        ]

        if kind == "wrong_bytes":
            buf = bytearray(data)
            offsets = params.get("offset")
            if offsets is None:
                offsets = [len(buf) // 2]
            elif isinstance(offsets, int):
                offsets = [offsets]
            for off in offsets:
                if buf:
                    buf[off % len(buf)] ^= 0xFF
            data = bytes(buf)

        code, start, end = 200, 0, len(data)
        range_header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if range_header and kind != "ignore_range" and if_range in (None, etag, last_modified):
            parsed = _parse_range(range_header, len(data))
            if isinstance(parsed, str):
                self._simple(416, b"", [("Content-Range", f"bytes */{len(data)}")], head)
                return
            if parsed is not None:
                code, (start, end) = 206, parsed
                if kind == "shifted_range":
                    start = max(0, start - int(params.get("shift", 1000)))
        body = data[start:end]
        hdrs = list(common)
        if code == 206:
            hdrs.append(("Content-Range", f"bytes {start}-{end - 1}/{len(data)}"))

        if kind == "extra_length" and params.get("endless"):
            self._raw_headers(code, [*hdrs, ("Transfer-Encoding", "chunked")])
            if head:
                return
            self.close_connection = True
            self._write_chunk(body)
            junk = b"\0" * 65536
            limit = int(params.get("limit", 1 << 34))
            sent = 0
            while not self.state.stopping.is_set() and sent < limit:
                if not self._write_chunk(junk):
                    return
                sent += len(junk)
            return
        if kind == "extra_length":
            body = body + b"\0" * int(params.get("extra", 1024))
        if kind == "truncate":
            after = params.get("after")
            cut = len(body) // 2 if after is None else int(after)
            self._raw_headers(code, [*hdrs, ("Content-Length", str(len(body)))])
            if not head:
                self._body(body[:cut])
                self.wfile.flush()
            self.close_connection = True
            return
        self._raw_headers(code, [*hdrs, ("Content-Length", str(len(body)))])
        if head:
            return
        if kind == "slow_drip":
            interval = float(params.get("interval", 0.5))
            chunk = int(params.get("chunk", 1))
            self.close_connection = True
            for pos in range(0, len(body), chunk):
                try:
                    self._body(body[pos : pos + chunk])
                    self.wfile.flush()
                except OSError:
                    return
                if self.state.stopping.wait(interval):
                    return
            return
        try:
            self._body(body)
        except OSError:
            self.close_connection = True

    def _write_chunk(self, data: bytes) -> bool:
        try:
            self.wfile.write(f"{len(data):x}\r\n".encode())
            self._body(data)
            self.wfile.write(b"\r\n")
            self.wfile.flush()
        except OSError:
            return False
        return True


def _parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """(start, end-exclusive), "unsatisfiable", or None to ignore (malformed, multi-range)."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            n = int(last)
            if n == 0:
                return "unsatisfiable"
            return max(0, size - n), size
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size:
        return "unsatisfiable"
    if end <= start:
        return None
    return start, min(end, size)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-body is what fault tests do; stay quiet about those only.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class FaultServer:
    """Serve ROOT on 127.0.0.1 (ephemeral port) until ``close()``; see the module docstring."""

    def __init__(self, root: Path | str, *, tls: bool = False) -> None:
        self.root = Path(root)
        self._state = _State(self.root)
        handler = type("Handler", (_Handler,), {"state": self._state})
        self._server = _Server(("127.0.0.1", 0), handler)
        self.port: int = self._server.server_address[1]
        self.ca_file: Path | None = None
        self._tmp: Path | None = None
        scheme = "http"
        if tls:
            self._tmp = Path(tempfile.mkdtemp(prefix="rs-tls-"))
            cert, keyfile = self._tmp / "cert.pem", self._tmp / "key.pem"
            subprocess.run(
                [
                    "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(keyfile), "-out", str(cert),
                ],
                check=True,
                capture_output=True,
            )  # fmt: skip
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, keyfile)
            # Handshake in the handler thread, so a client that never speaks TLS cannot
            # stall the accept loop.
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
            self.ca_file = cert
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    # --- faults and log ------------------------------------------------------------------

    def fault(
        self,
        pattern: str,
        kind: str,
        *,
        count: int | None = None,
        per_path: bool = False,
        **params: Any,
    ) -> Fault:
        """Add a fault for URL paths matching PATTERN (first added wins); returns it."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(FAULT_KINDS)}")
        if kind == "redirect" and "location" not in params:
            raise ValueError("redirect needs location=")
        if kind == "content" and "data" not in params:
            raise ValueError("content needs data=")
        fault = Fault(pattern, kind, params, count, per_path=per_path)
        with self._state.lock:
            self._state.faults.append(fault)
        return fault

    def clear(self, *, faults: bool = True, log: bool = True) -> None:
        """Remove all faults and/or forget the request log."""
        with self._state.lock:
            if faults:
                self._state.faults.clear()
            if log:
                self._state.requests.clear()

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request so far, oldest first (a copy)."""
        with self._state.lock:
            return list(self._state.requests)

    def fetched(self, pattern: str = "*") -> list[str]:
        """URL paths (without query) requested so far that match PATTERN."""
        out = []
        for req in self.requests:
            path = urllib.parse.urlsplit(req.path).path
            if fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path.lstrip("/"), pattern):
                out.append(path)
        return out

    def url_for(self, path: str | Path) -> str:
        """URL of PATH: a URL path ("/dists/...") or a file under ``root``."""
        if isinstance(path, Path) and path.is_absolute():
            path = "/" + path.relative_to(self.root).as_posix()
        return self.url + "/" + str(path).lstrip("/")

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop serving, wake slow handlers, close open connections. Idempotent."""
        if self._state.stopping.is_set():
            return
        self._state.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._state.lock:
            conns = list(self._state.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FaultServer({self.url}, root={self.root})"
