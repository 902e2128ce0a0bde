"""Measure the latency and throughput of ``mangakd serve`` next to raw onnxruntime on the same model.

Four measurements on one export directory, printed as one table:

* raw, batch 1: ``OnnxClassifier.predict`` in this process, one text per call, sequentially;
* raw, batch 32: the same with 32 texts per call;
* server, batch 1: one client sending single-text requests one after another;
* server, 32 clients: 32 concurrent clients sending single-text requests,
  which the server's micro-batcher merges.

The raw measurements include tokenisation and softmax, like the server's
batches, so the ratio shows what HTTP, JSON and batching add. The raw runs
finish before the server starts, so the two never compete for cores, but
the clients do share the machine with the server. All traffic goes to a
server on 127.0.0.1 that this script starts and stops.

Usage::

    python benchmarks/serve_latency.py [EXPORT_DIR] [--threads 1] [--requests 300]

Without EXPORT_DIR the script builds the small test classifier (two-layer
MiniLM, five CLINC150 intents) in a temporary folder first, which takes
about half a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import numpy as np
import onnxruntime

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mangakd.datasets import load_builtin
from mangakd.server.config import ServerConfig
from mangakd.server.state import load_classifier

START_TIMEOUT_S = 180.0


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "export_dir",
        nargs="?",
        type=Path,
        default=None,
        help="export directory (default: build the test model)",
    )
    parser.add_argument(
        "--model-file", default=None, help="ONNX file in the export directory (default: the manifest's)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="onnxruntime intra-op threads, raw and server alike (default 1)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=300,
        help="single-text requests or calls per batch-1 measurement (default 300)",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument(
        "--concurrent-requests",
        type=int,
        default=960,
        help="requests in total across the concurrent clients (default 960)",
    )
    parser.add_argument(
        "--raw-batch-size", type=int, default=32, help="texts per raw batched call (default 32)"
    )
    parser.add_argument("--max-batch-size", type=int, default=32, help="server --max-batch-size (default 32)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="server --max-wait-ms (default 5)")
    parser.add_argument(
        "--max-seconds", type=float, default=60.0, help="time limit per measurement in seconds (default 60)"
    )
    return parser.parse_args(argv)


def summarize(latencies_s: list[float], texts: int, wall_s: float) -> dict[str, float]:
    """Return P50 and P95 latency in ms and throughput in texts per second."""
    milliseconds = np.asarray(latencies_s) * 1000.0
    return {
        "p50_ms": float(np.percentile(milliseconds, 50)),
        "p95_ms": float(np.percentile(milliseconds, 95)),
        "throughput": texts / wall_s,
        "calls": len(latencies_s),
    }


def measure_raw(
    export_dir: Path, args: argparse.Namespace, texts: list[str], batch_size: int, calls: int
) -> dict[str, float]:
    config = ServerConfig(
        export_dir=export_dir,
        threads=args.threads,
        max_batch_size=max(batch_size, 1),
        model_file=args.model_file,
    )
    classifier = load_classifier(config)
    classifier.predict(texts[:batch_size])

    latencies: list[float] = []
    started = time.perf_counter()
    for call in range(calls):
        start = (call * batch_size) % (len(texts) - batch_size)
        before = time.perf_counter()
        classifier.predict(texts[start : start + batch_size])
        latencies.append(time.perf_counter() - before)
        if time.perf_counter() - started > args.max_seconds:
            break
    return summarize(latencies, len(latencies) * batch_size, time.perf_counter() - started)


class Server:
    """The server as a subprocess on 127.0.0.1, on a port the operating system picks."""

    def __init__(self, export_dir: Path, args: argparse.Namespace) -> None:
        command = [
            sys.executable,
            "-m",
            "mangakd.server",
            str(export_dir),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--threads",
            str(args.threads),
            "--max-batch-size",
            str(args.max_batch_size),
            "--max-wait-ms",
            str(args.max_wait_ms),
        ]
        if args.model_file:
            command += ["--model-file", args.model_file]
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.url = ""
        self._found = threading.Event()
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if match:
                self.url = match.group(1)
                self._found.set()
            elif "ERROR" in line or "Traceback" in line:
                print(line, end="", file=sys.stderr)

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._found.is_set():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start (exit code {self.process.poll()})")
            await asyncio.sleep(0.1)
        while True:
            try:
                async with session.get(self.url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server never became ready")
            await asyncio.sleep(0.1)

    def stop(self) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.process.returncode


async def measure_server(
    server: Server, args: argparse.Namespace, texts: list[str]
) -> dict[str, dict[str, float]]:
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await server.wait_ready(session)

        async def send(text: str) -> float:
            before = time.perf_counter()
            async with session.post(
                server.url + "/v1/predict", json={"texts": [text], "topK": 1}
            ) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"the server returned HTTP {response.status}")
            return time.perf_counter() - before

        for text in texts[:20]:
            await send(text)

        sequential: list[float] = []
        started = time.perf_counter()
        for index in range(args.requests):
            sequential.append(await send(texts[index % len(texts)]))
            if time.perf_counter() - started > args.max_seconds:
                break
        single = summarize(sequential, len(sequential), time.perf_counter() - started)

        concurrent: list[float] = []
        per_client = max(1, args.concurrent_requests // args.concurrency)
        deadline = time.perf_counter() + args.max_seconds

        async def client(offset: int) -> None:
            for index in range(per_client):
                concurrent.append(await send(texts[(offset * per_client + index) % len(texts)]))
                if time.perf_counter() > deadline:
                    return

        started = time.perf_counter()
        await asyncio.gather(*(client(offset) for offset in range(args.concurrency)))
        many = summarize(concurrent, len(concurrent), time.perf_counter() - started)
    return {"single": single, "concurrent": many}


def print_table(rows: list[tuple[str, dict[str, float], str]]) -> None:
    print(f"{'measurement':<34} {'calls':>6} {'P50 ms':>8} {'P95 ms':>8} {'texts/s':>9}  ratio")
    for name, stats, ratio in rows:
        print(
            f"{name:<34} {stats['calls']:>6} {stats['p50_ms']:>8.2f} {stats['p95_ms']:>8.2f} "
            f"{stats['throughput']:>9.1f}  {ratio}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    texts = [example.text for example in load_builtin("clinc150").test]

    with tempfile.TemporaryDirectory(prefix="mangakd-bench-") as scratch:
        export_dir = args.export_dir
        if export_dir is None:
            sys.path.insert(0, str(REPO_ROOT / "tests"))
            from model_fixtures import build_small_export

            print("building the small test classifier ...", file=sys.stderr)
            export_dir = build_small_export(Path(scratch))

        raw_single = measure_raw(export_dir, args, texts, 1, args.requests)
        raw_batch = measure_raw(export_dir, args, texts, args.raw_batch_size, max(1, args.requests // 4))

        server = Server(export_dir, args)
        try:
            served = asyncio.run(measure_server(server, args, texts))
        finally:
            exit_code = server.stop()

    print(
        f"model {export_dir} ({args.model_file or 'manifest model'}), onnxruntime {onnxruntime.__version__}, "
        f"{args.threads} intra-op thread(s), {os.cpu_count()} cores; server max batch {args.max_batch_size}, "
        f"max wait {args.max_wait_ms:g} ms; server exit code {exit_code}"
    )
    single_ratio = served["single"]["p50_ms"] / raw_single["p50_ms"]
    many_ratio = served["concurrent"]["throughput"] / raw_batch["throughput"]
    print_table(
        [
            ("raw onnxruntime, batch 1", raw_single, ""),
            (f"raw onnxruntime, batch {args.raw_batch_size}", raw_batch, ""),
            ("server, batch 1 sequential", served["single"], f"P50 x{single_ratio:.2f} of raw batch 1"),
            (
                f"server, {args.concurrency} concurrent clients",
                served["concurrent"],
                f"throughput x{many_ratio:.2f} of raw batch {args.raw_batch_size}",
            ),
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
