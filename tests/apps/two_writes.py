#!/usr/bin/env python3
"""An HTTP/1.1 keep-alive server that writes every response in two pieces, Nagle left on.

For tests/proxy_routing.rs: the head (status line and headers, with Content-Length) is one
send() and the body (`two-writes pid=<pid>\\n`) a second. With Nagle on, the second segment
waits for the ACK of the first, and a peer that delays its ACK (Linux: up to 40 ms) stalls
every response: the classic write-write-read pattern of real apps, which a proxy in front of
them must not turn into a delay on every request.

Binds 127.0.0.1:$PORT (or `--port N`), SO_REUSEADDR. One thread per connection; a connection
stays open until the client closes it, sends `Connection: close`, or is idle for 10 s. Any
request gets the same 200 answer. Prints `two-writes: serving pid=<pid>` once listening. On
SIGTERM (or SIGINT) it closes its listener and exits 0.
Stdlib only.
"""

import os
import signal
import socket
import sys
import threading

IDLE_TIMEOUT = 10.0
PID = os.getpid()
BODY = ("two-writes pid=%d\n" % PID).encode()


class Stop(Exception):
    pass


def port_from_args():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--port":
        return args[1]
    if args:
        sys.stderr.write("two-writes: usage: two_writes.py [--port N] (or PORT in the environment)\n")
        sys.exit(2)
    return os.environ.get("PORT")


def send_all(conn, data):
    """One send() for the whole piece; a loop only in case the kernel takes part of it."""
    while data:
        sent = conn.send(data)
        data = data[sent:]


def serve(conn):
    try:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        conn.settimeout(IDLE_TIMEOUT)
        reader = conn.makefile("rb")
        while True:
            line = reader.readline()
            if not line:
                return
            if not line.strip():
                continue  # a stray CRLF between requests
            close = line.strip().endswith(b"HTTP/1.0")
            length = 0
            while True:
                header = reader.readline()
                if not header:
                    return
                if header in (b"\r\n", b"\n"):
                    break
                name, _, value = header.decode("latin-1").partition(":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection":
                    close = value == "close" or (close and value != "keep-alive")
            if length:
                reader.read(length)
            head = (
                "HTTP/1.1 200 OK\r\n"
                "Content-Type: text/plain\r\n"
                "Content-Length: %d\r\n"
                "%s"
                "\r\n" % (len(BODY), "Connection: close\r\n" if close else "")
            ).encode()
            send_all(conn, head)
            send_all(conn, BODY)
            if close:
                return
    except (OSError, ValueError):
        pass
    finally:
        conn.close()


def on_signal(signum, frame):
    raise Stop()


def main():
    port = port_from_args()
    try:
        port = int(port)
        if not 0 <= port <= 65535:
            raise ValueError
    except (TypeError, ValueError):
        sys.stderr.write("two-writes: PORT is not a port number: %r\n" % (port,))
        sys.exit(2)
    # Request threads must not take the signals: block them while they start.
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGINT])
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
    except OSError as e:
        sys.stderr.write("two-writes: cannot bind 127.0.0.1:%d: %s\n" % (port, e))
        sys.exit(2)
    listener.listen(128)
    os.write(1, ("two-writes: serving pid=%d\n" % PID).encode())
    try:
        while True:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM, signal.SIGINT])
            conn, _ = listener.accept()
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGINT])
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
    except Stop:
        pass
    listener.close()
    os._exit(0)


if __name__ == "__main__":
    main()
