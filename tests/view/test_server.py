"""Serving a page: always behind the guard, the one URL line, Ctrl+C, a real uvicorn with its access log on."""

from __future__ import annotations

import json
import logging
import socket

import pytest

from tests.view.conftest import notes_app
from vidprop.errors import ConfigError
from vidprop.view import server as server_module
from vidprop.view.security import GuardedApp
from vidprop.view.server import PageServer, serve


def http(port: int, request: str) -> tuple[bytes, bytes]:
    """One raw HTTP/1.1 exchange with 127.0.0.1:port (headers exactly as given)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request.encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def test_run_announces_one_line_opens_it_and_stops_quietly(monkeypatch, tmp_path):
    import webbrowser

    opened, lines = [], []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url))

    served = []

    class Interrupted:  # uvicorn's server, stopped by Ctrl+C at once
        def __init__(self, app, access_log):
            served.append(app)

        def run(self, sockets):
            raise KeyboardInterrupt

    monkeypatch.setattr(server_module, "_uvicorn", Interrupted)
    app = notes_app(tmp_path / "n.txt")
    with PageServer() as server:
        server.run(app, name="vidprop annotate", open_browser=True, announce=lines.append)
        assert isinstance(served[0], GuardedApp) and served[0].app is app and served[0].guard is server.guard
        url = f"http://127.0.0.1:{server.port}/?token={server.guard.token}"
        assert lines == [f"vidprop annotate: {url}  (Ctrl+C to stop)"] and server.open_url == url
    import time

    deadline = time.monotonic() + 5
    while not opened and time.monotonic() < deadline:
        time.sleep(0.05)
    assert opened == [url]
    lines.clear()
    serve(notes_app(tmp_path / "n.txt"), "localhost", 0, no_token=True, name="x", announce=lines.append)
    assert len(lines) == 1 and lines[0].startswith("x: http://127.0.0.1:") and "token" not in lines[0]


def test_options_are_checked_before_the_port_is_taken():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigError, match="--no-token is only allowed"):
        PageServer("0.0.0.0", port, no_token=True)
    with PageServer("127.0.0.1", port) as server:  # the port was left free
        assert server.port == port


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(f"{record.name}: {record.getMessage()}")


def test_a_real_server_with_its_access_log(tmp_path, caplog):
    """uvicorn's access log writes each request's query string: it must never show the token."""
    notes = tmp_path / "notes.txt"
    records = Records()
    with caplog.at_level(logging.DEBUG):
        server = PageServer().start(notes_app(notes), access_log=True)
        for name in ("uvicorn.access", "uvicorn.error"):  # (uvicorn's own loggers do not propagate)
            logging.getLogger(name).addHandler(records)
        try:
            port, token = server.port, server.guard.token
            host = f"Host: 127.0.0.1:{port}\r\nConnection: close\r\n"
            head, _ = http(port, f"GET /notes?a=1&token={token} HTTP/1.1\r\n{host}\r\n")
            assert head.startswith(b"HTTP/1.1 303") and b"location: /notes?a=1\r\n" in head.lower()
            cookie = next(line for line in head.split(b"\r\n") if line.lower().startswith(b"set-cookie:"))
            cookie = cookie.split(b":", 1)[1].split(b";")[0].strip().decode()
            head, body = http(port, f"GET /notes HTTP/1.1\r\n{host}Cookie: {cookie}\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and body == b"original"
            for request in (f"GET /notes HTTP/1.1\r\nHost: evil.example.com\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n",
                            f"POST /notes HTTP/1.1\r\n{host}Cookie: {cookie}\r\nOrigin: http://evil.example.com\r\n"
                            "Content-Length: 4\r\n\r\nevil",
                            f"GET /notes HTTP/1.1\r\n{host}\r\n"):
                head, body = http(port, request)
                assert head.startswith(b"HTTP/1.1 403") and b"nosniff" in head and json.loads(body)["error"]
            assert notes.read_text() == "original"
        finally:
            server.stop()
            for name in ("uvicorn.access", "uvicorn.error"):
                logging.getLogger(name).removeHandler(records)
    logged = "\n".join(records.lines)
    assert '"GET /notes?a=1 HTTP/1.1" 303' in logged and '"POST /notes HTTP/1.1" 403' in logged  # the log was on
    for text in (logged, caplog.text):
        assert token not in text and cookie.split("=")[1] not in text
