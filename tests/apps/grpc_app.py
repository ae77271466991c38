#!/usr/bin/env python3
"""A gRPC server for the `--upstream h2c` tests (grpcio, no generated code: bytes in, bytes out).

It listens on 127.0.0.1:$PORT without TLS (h2c), and serves:
- /devserve.Test/Version (unary): `gen=N` (DEVSERVE_GENERATION);
- /devserve.Test/Count (server streaming): three messages `gen=N i=0..2`, 50 ms apart.
It prints `grpc: serving gen=N port=P` once it listens and stops gracefully on SIGTERM (calls in
flight finish).
"""
import os
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

GEN = os.environ.get("DEVSERVE_GENERATION", "-")


def version(request, context):
    return f"gen={GEN}".encode()


def count(request, context):
    for i in range(3):
        yield f"gen={GEN} i={i}".encode()
        time.sleep(0.05)


def main():
    port = os.environ.get("PORT")
    if not port:
        print("grpc: PORT is not set", file=sys.stderr)
        sys.exit(2)
    handler = grpc.method_handlers_generic_handler(
        "devserve.Test",
        {
            "Version": grpc.unary_unary_rpc_method_handler(version),
            "Count": grpc.unary_stream_rpc_method_handler(count),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"grpc: serving gen={GEN} port={port}", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    server.stop(grace=10).wait()


if __name__ == "__main__":
    main()
