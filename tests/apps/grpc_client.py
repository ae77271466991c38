#!/usr/bin/env python3
"""A gRPC client for the `--upstream h2c` tests: `grpc_client.py TARGET STOP_FILE`.

On one channel (HTTP/2 without TLS, as gRPC clients open them) it makes unary and
server-streaming calls in a loop until STOP_FILE exists, printing `seen gen=N` the first time a
generation answers, then one JSON line: {"calls": n, "failed": [errors...]}.
"""
import json
import os
import sys

import grpc


def main():
    target, stop_file = sys.argv[1], sys.argv[2]
    channel = grpc.insecure_channel(target)
    version = channel.unary_unary("/devserve.Test/Version")
    count = channel.unary_stream("/devserve.Test/Count")
    calls, failed, seen = 0, [], set()
    while not os.path.exists(stop_file):
        try:
            answer = version(b"", timeout=30).decode()
            gen = answer.split("=", 1)[1]
            if gen not in seen:
                seen.add(gen)
                print(f"seen gen={gen}", flush=True)
            parts = [m.decode() for m in count(b"", timeout=30)]
            if len(parts) != 3 or any(not p.startswith("gen=") for p in parts):
                failed.append(f"stream: {parts}")
            calls += 2
        except grpc.RpcError as error:
            failed.append(f"{error.code()}: {error.details()}")
    print(json.dumps({"calls": calls, "failed": failed[:20], "failures": len(failed)}), flush=True)


if __name__ == "__main__":
    main()
