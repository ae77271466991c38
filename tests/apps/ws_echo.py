#!/usr/bin/env python3
"""A minimal RFC 6455 WebSocket echo server that says goodbye properly when it stops.

For tests/proxy_drain.rs: long-lived connections at a swap. Binds 127.0.0.1:$PORT (or
`--port N`), SO_REUSEADDR; reads its version once at start from the file named by
VERSION_FILE (trimmed; `missing` if it cannot be read, `0` if VERSION_FILE is unset).

- `GET /` with `Upgrade: websocket`: the handshake (`101`, Sec-WebSocket-Accept), then every
  text frame is echoed as a text frame `"<version> <text>"`; a ping gets a pong; a close frame
  is answered with a close frame (same code) and the connection ends.
- any other `GET /`: `200`, body `ws-echo version=<v> pid=<pid>\\n`, `Connection: close`; with
  `WS_ECHO_HTML=1` the same text in a small HTML page (`text/html`), as a dev server's page.
- SIGTERM or SIGINT: closes the listener, sends every open WebSocket a close frame with
  status 1001 ("going away"), waits (2 s at most) for the clients to answer or go, and exits 0.

Prints `ws-echo: serving version=<v> pid=<pid>` once listening, and
`ws-echo: going away, closing N websockets pid=<pid>` at a stop. Stdlib only; one thread per
connection; frames from the client must be masked and unfragmented (a test client's are).
"""

import base64
import hashlib
import os
import signal
import socket
import struct
import sys
import threading
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PID = os.getpid()
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
GOING_AWAY = 1001
CLOSE_WAIT = 2.0


class Stop(Exception):
    pass


def read_version():
    path = os.environ.get("VERSION_FILE")
    if path is None:
        return "0"
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "missing"


VERSION = read_version()


def say(text):
    os.write(1, (text + "\n").encode())


class WebSocket:
    """One upgraded connection: its socket, a lock so frames from two threads never interleave,
    and whether this side has sent its close frame."""

    def __init__(self, conn):
        self.conn = conn
        self.lock = threading.Lock()
        self.close_sent = False

    def send(self, opcode, payload=b""):
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        with self.lock:
            if self.close_sent:
                return
            if opcode == OP_CLOSE:
                self.close_sent = True
            self.conn.sendall(head + payload)

    def close(self, code):
        try:
            self.send(OP_CLOSE, struct.pack("!H", code))
        except OSError:
            pass


OPEN = set()
OPEN_LOCK = threading.Lock()


def read_exact(reader, n):
    data = reader.read(n)
    if data is None or len(data) < n:
        raise EOFError
    return data


def read_frame(reader):
    b0, b1 = read_exact(reader, 2)
    opcode, masked, n = b0 & 0x0F, b1 & 0x80, b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", read_exact(reader, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", read_exact(reader, 8))
    mask = read_exact(reader, 4) if masked else b"\0\0\0\0"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(read_exact(reader, n)))
    return opcode, payload


def websocket(conn, reader, headers):
    key = headers.get("sec-websocket-key", "")
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    conn.sendall(
        (
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: %s\r\n"
            "\r\n" % accept
        ).encode()
    )
    ws = WebSocket(conn)
    with OPEN_LOCK:
        OPEN.add(ws)
    try:
        while True:
            opcode, payload = read_frame(reader)
            if opcode == OP_TEXT:
                ws.send(OP_TEXT, ("%s %s" % (VERSION, payload.decode("utf-8", "replace"))).encode())
            elif opcode == OP_PING:
                ws.send(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1000
                ws.close(code)
                return
    except (EOFError, OSError):
        return
    finally:
        with OPEN_LOCK:
            OPEN.discard(ws)


def serve(conn):
    try:
        reader = conn.makefile("rb")
        conn.settimeout(10.0)
        line = reader.readline().decode("latin-1")
        headers = {}
        while True:
            header = reader.readline()
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("upgrade", "").lower() == "websocket":
            conn.settimeout(None)
            websocket(conn, reader, headers)
            return
        parts = line.split()
        kind = "text/plain"
        if len(parts) >= 2 and parts[0] == "GET" and parts[1] == "/":
            status, body = "200 OK", "ws-echo version=%s pid=%d\n" % (VERSION, PID)
            if os.environ.get("WS_ECHO_HTML") == "1":
                kind = "text/html"
                body = "<!doctype html><html><head><title>ws-echo</title></head><body>%s</body></html>\n" % body
        else:
            status, body = "404 Not Found", "not found\n"
        conn.sendall(
            (
                "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                "Connection: close\r\n\r\n%s" % (status, kind, len(body), body)
            ).encode()
        )
    except (OSError, ValueError, EOFError):
        pass
    finally:
        conn.close()


def on_signal(signum, frame):
    raise Stop()


def main():
    args = sys.argv[1:]
    port = args[1] if len(args) == 2 and args[0] == "--port" else os.environ.get("PORT")
    try:
        port = int(port)
        if not 0 <= port <= 65535:
            raise ValueError
    except (TypeError, ValueError):
        sys.stderr.write("ws-echo: PORT is not a port number: %r\n" % (port,))
        sys.exit(2)
    # Connection threads start with the signals blocked, so the main thread takes them.
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGINT])
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
    except OSError as e:
        sys.stderr.write("ws-echo: cannot bind 127.0.0.1:%d: %s\n" % (port, e))
        sys.exit(2)
    listener.listen(128)
    say("ws-echo: serving version=%s pid=%d" % (VERSION, PID))
    try:
        while True:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM, signal.SIGINT])
            conn, _ = listener.accept()
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGINT])
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
    except Stop:
        pass
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGINT])
    listener.close()
    with OPEN_LOCK:
        going = list(OPEN)
    say("ws-echo: going away, closing %d websockets pid=%d" % (len(going), PID))
    for ws in going:
        ws.close(GOING_AWAY)
    # The closing handshake: each connection's thread ends when its client answers the close
    # frame or goes. Closing at once could reset the connection before the frame is read.
    deadline = time.monotonic() + CLOSE_WAIT
    while time.monotonic() < deadline:
        with OPEN_LOCK:
            if not OPEN:
                break
        time.sleep(0.01)
    for ws in going:
        try:
            ws.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    say("ws-echo: stopped pid=%d" % PID)
    os._exit(0)


if __name__ == "__main__":
    main()
