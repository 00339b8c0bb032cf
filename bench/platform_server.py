"""Measure the local platform server under hostile load, as `buildtool platform serve` runs it.

Starts the real command in a subprocess on 127.0.0.1 and reads the server's own
memory and thread count from /proc while it is hit with:

1. three unauthenticated POSTs at once, each claiming a 900 MB body (to login, then to upload),
   each streaming up to 64 MB before the server closes it;
2. an authenticated upload of a large file through the platform client;
3. 300 connections that send half a request line and stop, then one good login.

    .venv/bin/python bench/platform_server.py [--upload-mb 512]
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from platform_client import PlatformClient

LOGIN = "/api/v1.1.1/entrypoint/AccountValidator/login"
UPLOAD = "/api/v0.1/file_operation/ModelFileManager/upload"
MB = 1024 * 1024


def status_field(pid: int, field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match, field
    return int(match.group(1))


def hostile_post(port: int, path: str, results: list[tuple[str, int]]) -> None:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nUid: m1\r\nContent-Length: {900 * MB}\r\n\r\n".encode()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        try:
            connection.sendall(head)
            chunk = b"\0" * MB
            while sent < 64 * MB:
                connection.sendall(chunk)
                sent += MB
        except OSError:
            pass
        try:
            answer = " ".join(connection.recv(100).split(b"\r\n")[0].decode().split()[1:2]) or "(closed)"
        except OSError as exc:
            answer = f"({type(exc).__name__})"
    results.append((answer, sent // MB))


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--upload-mb", type=int, default=512)
    args = options.parse_args()

    data = Path(tempfile.mkdtemp(prefix="platform-bench-"))
    (data / "accounts.yaml").write_text("accounts:\n  bench: bench-secret-0123456789\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "buildtool", "platform", "serve", "--port", "0", "--data", str(data), "--workers", "16"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stderr.readline() if server.stderr else ""
        port = int(re.search(r"http://[\d.]+:(\d+)", line).group(1))  # type: ignore[union-attr]
        pid = server.pid
        rows = [("idle", f"{status_field(pid, 'VmRSS') / 1024:.0f} MB RSS, {status_field(pid, 'Threads')} threads")]

        for name, path in (("login", LOGIN), ("upload", UPLOAD)):
            results: list[tuple[str, int]] = []
            threads = [threading.Thread(target=hostile_post, args=(port, path, results)) for _ in range(3)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            peak = status_field(pid, "VmHWM")
            answers = ", ".join(sorted({answer for answer, _ in results}))
            sent = sorted(megabytes for _, megabytes in results)
            rows.append(
                (
                    f"3 x 900 MB unauthenticated POST to {name}",
                    f"HTTP {answers} after {sent[0]}-{sent[-1]} MB sent, {time.monotonic() - started:.2f}s; "
                    f"server peak RSS so far {peak / 1024:.0f} MB",
                )
            )

        model = data / "model.bin"
        with model.open("wb") as out:
            out.truncate(args.upload_mb * MB)
        client = PlatformClient("127.0.0.1", port, "bench", "bench-secret-0123456789", timeout=(5, 120))
        client.login()
        started = time.monotonic()
        client.upload("model", "bench-model", model)
        seconds = time.monotonic() - started
        client.close()
        peak = status_field(pid, "VmHWM")
        rows.append(
            (
                f"authenticated upload of {args.upload_mb} MB",
                f"{seconds:.1f}s ({args.upload_mb / seconds:.0f} MB/s); server peak RSS so far {peak / 1024:.0f} MB",
            )
        )
        model.unlink()

        sockets = []
        for _ in range(300):
            connection = socket.create_connection(("127.0.0.1", port), timeout=5)
            connection.sendall(f"POST {LOGIN} HTTP/1.1\r\nHost: x\r\nContent-Le".encode())
            sockets.append(connection)
        time.sleep(0.5)
        held = status_field(pid, "Threads")
        started = time.monotonic()
        login = PlatformClient("127.0.0.1", port, "bench", "bench-secret-0123456789", retries=20, backoff=0.2)
        login.login()
        waited = time.monotonic() - started
        login.close()
        for connection in sockets:
            connection.close()
        rows.append(
            (
                "300 half-sent requests, then a login",
                f"{held} server threads while held; the login succeeded after {waited:.1f}s",
            )
        )
    finally:
        server.terminate()
        server.wait(10)

    width = max(len(case) for case, _ in rows)
    print(f"| {'case':<{width}} | result |\n|{'-' * (width + 2)}|--------|")
    for case, result in rows:
        print(f"| {case:<{width}} | {result} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
