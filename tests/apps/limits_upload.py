#!/usr/bin/env python3
"""The app behind tests/security.rs's slow-body test (stdlib only).

Binds 127.0.0.1:$PORT. Reads one request per connection: a POST is answered
`got=N` once its whole Content-Length body has arrived (N: the bytes it read),
anything else `ok`. Every answer is 200 with Content-Length and
Connection: close. One thread per connection; SIGTERM ends it (Python's default).

The fixture app answers a POST with 404 without reading the body, and closing a
socket with unread bytes resets it: that would race with the answer. This app
reads the body whole, so the test also sees that the proxy forwarded all of it.
"""

import os
import socket
import threading


def serve(conn):
    with conn:
        conn.settimeout(60)
        try:
            stream = conn.makefile("rb")
            request_line = stream.readline()
            length = 0
            while True:
                header = stream.readline()
                if header in (b"\r\n", b"\n", b""):
                    break
                name, _, value = header.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            body = stream.read(length) if length else b""
            if request_line.startswith(b"POST "):
                text = b"got=%d\n" % len(body)
            else:
                text = b"ok\n"
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(text) + text
            )
        except (OSError, ValueError):
            pass


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(os.environ["PORT"])))
    listener.listen(128)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
