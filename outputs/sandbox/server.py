"""The partner sandbox server: a threaded HTTP/1.1 server (keep-alive, TCP_NODELAY) and the router.

    with PartnerSandbox() as sandbox:          # or: url = sandbox.start(port=8125) ... sandbox.stop()
        requests.get(f"{sandbox.url}/mailchimp/us6/3.0/ping", auth=("any", key))

Routing: ``/_sandbox/...`` is the control API; ``/<partner>/...`` goes to that partner's emulation after its
admission check (auth, connection limits) and any injected fault. No request is logged unless ``verbose``.
"""

import json
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .common import DROP, Partial, Request, dumps, iso_stamp, json_response, reason
from .control import Control, seed_demo
from .emulators import discover
from .faults import ANSWERS, FaultBook, answer
from .state import FORMAT, StateFile


class PartnerSandbox:
    def __init__(self, verbose=False, state_file=None):
        """``state_file``: a JSON file the partners' data is loaded from at start and saved to after changes
        (see state.py); None keeps it in memory only, as the tests do."""
        self.verbose = verbose
        self.partners = {emulator.name: emulator(self) for emulator in discover()}
        self.faults = FaultBook(tuple(self.partners))
        self.control = Control(self)
        self.state = StateFile(state_file, self) if state_file else None
        # Days the sandbox's clock runs ahead of the real one (POST /_sandbox/clock): rules that act after days
        # or months, such as Xandr's segment expiration, are tested by moving it rather than by waiting.
        self.clock_offset = 0.0
        self._stats_lock = threading.Lock()
        self._reset_stats()
        self._server = None
        self._thread = None
        self._stopping = threading.Event()
        self.url = None

    # --- lifecycle -----------------------------------------------------------------------------------------
    def start(self, host="127.0.0.1", port=0):
        """Listen on host:port (0 picks a free port) in a background thread; returns the base URL."""
        if self._server is not None:
            return self.url
        self._stopping = threading.Event()
        self._server = _Server((host, port), _Handler, self)
        bound_host, bound_port = self._server.server_address[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}"
        if self.state is not None:  # loaded once the port is ours, before the first request is served
            self.state.load()
            self.state.start()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="partner-sandbox", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self):
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes requests held by timeout/slow faults
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None
        if self.state is not None:
            self.state.stop()

    def wait(self):
        """Block until stopped (or Ctrl-C); used by ``manage.py partner_sandbox``."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # --- state ---------------------------------------------------------------------------------------------
    def reset(self):
        """Empty every partner; the state file, if any, is emptied with them at once."""
        self.clear()
        if self.state is not None:
            self.state.save()

    def clear(self):
        self.faults.clear()
        self.clock_offset = 0.0
        for partner in self.partners.values():
            with partner.lock:
                partner.reset()
        self._reset_stats()

    def dump_state(self):
        """What each partner holds, JSON-safe (faults and request statistics are not kept)."""
        partners = {}
        for name, partner in self.partners.items():
            # Encoded under the lock: a request changing the partner meanwhile would change what is being read.
            with partner.lock:
                text = json.dumps(partner.dump(), ensure_ascii=False)
            partners[name] = json.loads(text)
        return {"format": FORMAT, "saved_at": iso_stamp(), "clock_offset": self.clock_offset, "partners": partners}

    def load_state(self, saved):
        """The reverse of ``dump_state``; raises KeyError, TypeError or ValueError on a state of another shape."""
        clock_offset = saved["clock_offset"]
        if isinstance(clock_offset, bool) or not isinstance(clock_offset, int | float):
            raise TypeError("clock_offset is not a number")
        for name, partner in self.partners.items():
            with partner.lock:
                if name in saved["partners"]:
                    partner.load(saved["partners"][name])
                else:  # a partner added since the state was saved starts empty
                    partner.reset()
        self.clock_offset = float(clock_offset)

    def seed_demo(self):
        return seed_demo(self)

    def now(self):
        """The sandbox's time: the real time plus however far the clock was moved."""
        return time.time() + self.clock_offset

    def advance_clock(self, days):
        if isinstance(days, bool) or not isinstance(days, int | float) or not 0 <= days <= 36_500:
            raise ValueError("'advance_days' must be a number of days from 0 to 36,500.")
        self.clock_offset += days * 86400
        return {"now": iso_stamp(self.now()), "offset_days": self.clock_offset / 86400}

    def _reset_stats(self):
        with self._stats_lock:
            self._requests = dict.fromkeys(self.partners, 0)
            self._max_concurrent = dict.fromkeys(self.partners, 0)
            if not hasattr(self, "_in_flight"):
                self._in_flight = dict.fromkeys(self.partners, 0)

    def stats(self):
        with self._stats_lock:
            return {
                "requests": dict(self._requests),
                "max_concurrent": dict(self._max_concurrent),
                "in_flight": dict(self._in_flight),
                "duplicates": {name: p.duplicates for name, p in self.partners.items()},
            }

    def describe(self, base):
        return {
            "sandbox": "Audience Relay partner sandbox",
            "control": f"{base}/_sandbox",
            "partners": {name: p.index(base) for name, p in self.partners.items()},
        }

    def hold(self, seconds):
        """Sleep for a fault, waking early when the sandbox stops."""
        self._stopping.wait(seconds)

    # --- routing -------------------------------------------------------------------------------------------
    def dispatch(self, request):
        path = request.path
        if path.startswith("/_sandbox"):
            try:
                return self.control.handle(request)
            finally:
                self._changed()
        name, _, rest = path[1:].partition("/")
        partner = self.partners.get(name)
        if partner is None:
            if path == "/":
                return json_response(200, self.describe(request.base_url()))
            return json_response(
                404, {"error": f"No sandbox partner at {path}.", "prefixes": [f"/{p}/" for p in self.partners]}
            )
        target = path if not request.query else f"{path}?{request.query}"
        request.path = "/" + rest
        with self._stats_lock:
            self._requests[name] += 1
            busy = self._in_flight[name] = self._in_flight[name] + 1
            if busy > self._max_concurrent[name]:
                self._max_concurrent[name] = busy
        try:
            early = partner.admit(request)
            if early is not None:
                return early
            try:
                fault = self.faults.take(name, target)
                if fault is not None:
                    if fault.kind == "drop":
                        return DROP
                    if fault.kind in ANSWERS:
                        return answer(fault, request)
                    if fault.kind == "status":
                        response = partner.error_response(fault.status, fault.retry_after)
                        if fault.body is not None:
                            body = fault.body if isinstance(fault.body, str) else dumps(fault.body)
                            response.body = body.encode("utf-8")
                        return response
                    self.hold(fault.delay)
                return partner.handle(request)
            finally:
                partner.release(request)
        finally:
            with self._stats_lock:
                self._in_flight[name] -= 1
            self._changed()

    def _changed(self):
        # Set after the request's change is made: the saver, which reads each partner under its lock, then
        # writes it with the next save. Any request may change something (a Xandr job's phase moves on a poll).
        if self.state is not None:
            self.state.changed = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, address, handler, sandbox):
        self.sandbox = sandbox
        self._connections = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def handle_error(self, request, client_address):
        # A client that hangs up mid-request (a killed worker, a timeout it gave up on) is an everyday event
        # for a partner API, not a traceback worth printing; anything else still is.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)

    def get_request(self):
        sock, address = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address

    def track(self, connection, alive):
        with self._connections_lock:
            if alive:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self):
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PartnerSandbox/1.0"
    sys_version = ""
    timeout = 120  # an idle keep-alive connection is closed after this many seconds
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        self.server.track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        if self.server.sandbox.verbose:
            sys.stderr.write(f"[sandbox] {self.address_string()} {format % args}\n")

    def _serve(self):
        sandbox = self.server.sandbox
        started = time.perf_counter()
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._write(400, [("Content-Type", "application/json")], b'{"error":"Unreadable request body."}')
            return
        target = self.path
        if target.startswith(("http://", "https://")):  # absolute-form request target
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        path, _, query = target.partition("?")
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        request = Request(self.command, path, query, self.headers, body, host)
        try:
            response = sandbox.dispatch(request)
        except Exception as exc:  # a sandbox bug: say so loudly, answer 500, keep serving
            traceback.print_exc(file=sys.stderr)
            response = json_response(500, {"error": f"Partner sandbox error: {exc.__class__.__name__}: {exc}"})
        if response is DROP:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            if sandbox.verbose:
                sys.stderr.write(f"[sandbox] {self.command} {self.path} -> dropped\n")
            return
        if isinstance(response, Partial):
            self._write_part(sandbox, response)
            return
        self._write(response.status, response.headers, response.body)
        if sandbox.verbose:
            elapsed = (time.perf_counter() - started) * 1000
            sys.stderr.write(f"[sandbox] {self.command} {self.path} -> {response.status} ({elapsed:.1f} ms)\n")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def _write_part(self, sandbox, partial):
        """Declare the whole body, send the start of it, wait, then hang up."""
        response = partial.response
        self.close_connection = True
        head = [f"HTTP/1.1 {response.status} {reason(response.status)}\r\n"]
        head.extend(f"{name}: {value}\r\n" for name, value in response.headers)
        head.append(f"Content-Length: {len(response.body)}\r\n\r\n")
        try:
            self.wfile.write("".join(head).encode("latin-1") + response.body[: partial.sent])
            self.wfile.flush()
            sandbox.hold(partial.hold)
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write(self, status, headers, body):
        if status in (204, 304) or self.command == "HEAD":
            body = b"" if status in (204, 304) else body
        lines = [f"HTTP/1.1 {status} {reason(status)}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in headers)
        if status not in (204, 304):
            lines.append(f"Content-Length: {len(body)}\r\n")
        if self.close_connection:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        payload = "".join(lines).encode("latin-1")
        if self.command != "HEAD":
            payload += body
        try:
            self.wfile.write(payload)
        except OSError:  # the client went away (a timed-out caller, say)
            self.close_connection = True
