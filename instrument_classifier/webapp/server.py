"""The production WSGI server of the web app: waitress, bounded, with JSON error replies.

waitress holds up to ``SERVER_CONNECTION_LIMIT`` connections and closes one
idle for ``SERVER_CHANNEL_TIMEOUT`` seconds, so idle and slow clients do not
lock others out; bodies and replies stay in memory, never spooled to disk.
"""

from __future__ import annotations

import html
import json

from flask import Flask
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from ..defaults import SERVER_THREADS
from .limits import MAX_REQUEST_BYTES, request_too_large_message

# waitress (worker threads: defaults.SERVER_THREADS): open connections (idle
# and slow ones cost a socket and what they have sent, at most MAX_REQUEST_BYTES
# each, but each takes a place: the default 100 let 98 idle clients lock
# everyone out); a connection silent this many seconds is closed, checked
# every SERVER_CLEANUP_INTERVAL s.
SERVER_CONNECTION_LIMIT = 400
SERVER_CHANNEL_TIMEOUT = 30
SERVER_CLEANUP_INTERVAL = 5
# Bodies and replies are buffered in memory up to this size, never spooled to
# a temporary file; no accepted body or reply comes near it.
SERVER_BUFFER_BYTES = 2 * MAX_REQUEST_BYTES

SERVER_SETTINGS = {
    "max_request_body_size": MAX_REQUEST_BYTES + 1,  # waitress refuses a Content-Length >= this
    "inbuf_overflow": SERVER_BUFFER_BYTES,
    "outbuf_overflow": SERVER_BUFFER_BYTES,
    "connection_limit": SERVER_CONNECTION_LIMIT,
    "channel_timeout": SERVER_CHANNEL_TIMEOUT,
    "cleanup_interval": SERVER_CLEANUP_INTERVAL,
    "asyncore_use_poll": True,  # select() fails past file descriptor 1023
    "ident": "instrument-classifier",
}


def make_server(app: Flask, *, host: str = "127.0.0.1", port: int = 5000, threads: int = SERVER_THREADS):
    """A waitress server for ``app`` with :data:`SERVER_SETTINGS` (``port=0``: a free port).

    ``server.effective_listen`` lists the (host, port) pairs it listens on.
    Bodies and replies stay in memory, so uploads never touch the disk;
    waitress's own error replies are JSON (:class:`JsonErrorTask`).  Raises
    OSError when it cannot listen, ValueError for a host that does not resolve.
    """
    import waitress
    from waitress.server import BaseWSGIServer, MultiSocketServer

    server = waitress.create_server(app, host=host, port=port, threads=threads, **SERVER_SETTINGS)
    listeners = [server] if not isinstance(server, MultiSocketServer) else \
        [s for s in server.map.values() if isinstance(s, BaseWSGIServer)]
    for listener in listeners:
        listener.channel_class = Channel
    if not isinstance(server, MultiSocketServer):
        server.effective_listen = [(server.effective_host, server.effective_port)]
    return server


class JsonErrorTask(ErrorTask):
    """waitress's own error replies as the app's ``{"error", "status"}`` JSON (a short page to the form post).

    waitress answers some requests itself, before the app sees them: a body
    over ``max_request_body_size`` (413, from the Content-Length, before the
    body is read), a malformed request line or header (400), oversized headers
    (431).
    """

    def execute(self):
        error = self.request.error
        if error.code == 413:
            message = request_too_large_message(getattr(self.request, "content_length", None))
        else:
            message = f"{error.reason.lower()}: {error.body}" if error.body else error.reason.lower()
        if getattr(self.request, "command", None) == "POST" and getattr(self.request, "path", None) == "/":
            # The page's plain form post (no JavaScript) shows a page, not JSON; the app's own one needs the
            # app, which this reply comes before, so a short one with the way back.
            body = (f'<!doctype html><html lang="en"><meta charset="utf-8"><title>{error.code} {error.reason}</title>'
                    f'<p role="alert">{html.escape(message)}</p><p><a href="/">Back to the page</a></p></html>'
                    ).encode()
            content_type = "text/html; charset=utf-8"
        else:
            body = json.dumps({"error": message, "status": error.code}).encode()
            content_type = "application/json"
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend([("Content-Type", content_type), ("X-Content-Type-Options", "nosniff")])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class Channel(HTTPChannel):
    """waitress's connection, with JSON error replies and no "100 Continue" to a refused request.

    waitress (3.0) answers ``Expect: 100-continue`` even for a request it has
    already refused, then reads the refused body, past ``inbuf_overflow`` into
    a temporary file, before its 413.
    """

    error_task_class = JsonErrorTask

    def send_continue(self):
        if self.request is not None and self.request.error is not None:
            self.request.expect_continue = False
            return
        super().send_continue()
