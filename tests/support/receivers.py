# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real loopback receivers for the audit sinks: an HTTP(S) webhook server, syslog sockets (UDP or
Unix datagram) and an SMTP server (aiosmtpd, plain, STARTTLS or implicit TLS, recording AUTH)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.support.openbao import free_port


class Webhook:
    """An HTTP server on 127.0.0.1 that records POSTs; ``fail`` maps path -> statuses to answer first.

    With ``tls`` (an ``ssl.SSLContext`` for the server) it speaks HTTPS.
    """

    def __init__(self, tls=None):
        self.requests = []
        self.fail = {}
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner.lock:
                    owner.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    queue = owner.fail.get(self.path) or []
                    status = queue.pop(0) if queue else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def bodies(self, path=None):
        with self.lock:
            return [r["body"] for r in self.requests if path is None or r["path"] == path]

    def events(self, path):
        return [json.loads(body) for body in self.bodies(path)]


class SyslogReceiver:
    """A datagram socket (UDP on 127.0.0.1, or a Unix socket) collecting syslog messages."""

    def __init__(self, unix_path=None):
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.bind(unix_path)
            self.address = unix_path
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
            self.address = "udp://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.messages = []
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while self.running:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append(data.decode("utf-8"))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join(5)
        self.sock.close()

    def bodies(self):
        """The JSON bodies of the RFC 5424 messages."""
        return [json.loads(message.split(" - ", 1)[1]) for message in list(self.messages)]


class MailSink:
    """aiosmtpd handler: keeps every message and every AUTH attempt (mechanism, login, password)."""

    def __init__(self):
        self.messages = []
        self.auth_attempts = []
        self.port = None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.messages.append(envelope)
        return "250 OK"

    def authenticator(self, server, session, envelope, mechanism, auth_data):
        login = getattr(auth_data, "login", b"") or b""
        password = getattr(auth_data, "password", b"") or b""
        self.auth_attempts.append((mechanism, login.decode("utf-8", "replace"), password.decode("utf-8", "replace")))
        return AuthResult(success=True)


class SmtpServer:
    """An SMTP server on 127.0.0.1: ``mode`` plain (AUTH offered without TLS), starttls or tls (implicit)."""

    def __init__(self, mode="plain", tls=None):
        self.handler = MailSink()
        kwargs = dict(authenticator=self.handler.authenticator, auth_require_tls=False)
        if mode == "starttls":
            kwargs["tls_context"] = tls
        elif mode == "tls":
            kwargs["ssl_context"] = tls
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=free_port(), **kwargs)

    def __enter__(self):
        self.controller.start()
        self.handler.port = self.controller.port
        return self.handler

    def __exit__(self, *exc):
        self.controller.stop()
