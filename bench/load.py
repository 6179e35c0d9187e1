"""Closed-loop HTTP load generator, run in its own process: `python -m bench.load < spec.json`.

The spec (JSON on stdin): host, port, method, path, body_file (or null), concurrency,
duration_s, warmup_s, client ("raw" or "httpx"), and optionally requests_file: a JSON-lines file
of {"method", "path", "body"} (body a string) sent in turn instead of the one request, each
connection starting at its own place in the list (connection k of c at k/c of it) and going
through it in order, round and round. `concurrency` connections each send one request,
wait for the whole answer, and send the next (keep-alive). Requests that complete during the
warmup are not counted; no request is started after the end. Prints one JSON object: count,
requests/s, latency percentiles (ms), the median latency of each 0.5-s slice of the measured
time, and the status codes seen.

Two clients: `raw` speaks HTTP/1.1 over asyncio streams (a fixed request, Content-Length or
chunked answers); `httpx` uses httpx.AsyncClient with a pool of `concurrency` connections. The raw
client costs less CPU per request, which matters on a small machine where the load generator
shares the cores with the server (see README.md for the measured difference).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Spec:
    host: str
    port: int
    method: str
    path: str
    body_file: str | None
    concurrency: int
    duration_s: float
    warmup_s: float
    client: str = "raw"
    requests_file: str | None = None


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: bytes | None


def calls_of(spec: Spec) -> list[Call]:
    """The requests to send in turn: the requests file's, or the one of method, path, body."""
    if spec.requests_file:
        with open(spec.requests_file, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        return [
            Call(r["method"], r["path"], r["body"].encode() if r.get("body") is not None else None)
            for r in rows
        ]
    body = None
    if spec.body_file:
        with open(spec.body_file, "rb") as fh:
            body = fh.read()
    return [Call(spec.method, spec.path, body)]


def rotation(items: list[Any], k: int, concurrency: int) -> Iterator[Any]:
    """Connection `k`'s endless walk through `items`, from its own starting place."""
    start = len(items) * k // max(concurrency, 1)
    return itertools.islice(itertools.cycle(items), start, None)


@dataclass
class Tally:
    measure_from: float
    measure_to: float
    latencies: list[float] = field(default_factory=list)
    #: When each counted request started, in seconds after `measure_from` (same order).
    starts: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    warmup_statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, started: float, ended: float, status: int) -> None:
        if started >= self.measure_from and ended <= self.measure_to:
            self.latencies.append(ended - started)
            self.starts.append(started - self.measure_from)
            self.statuses[status] = self.statuses.get(status, 0) + 1
        else:
            self.warmup_statuses[status] = self.warmup_statuses.get(status, 0) + 1


#: Slice of the measured time over which `window_medians` takes each median.
WINDOW_S = 0.5


def window_medians(starts: list[float], latencies: list[float], window_s: float) -> list[float]:
    """The median latency of the requests started in each `window_s` slice, in time order.

    In a closed loop a request's latency follows how fast the server ran while it waited, so
    medians that move from slice to slice mean the machine ran faster or slower during the run
    (bench/README.md, "p50 by 0.5 s")."""
    slices: dict[int, list[float]] = {}
    for start, latency in zip(starts, latencies, strict=True):
        slices.setdefault(int(start // window_s), []).append(latency)
    return [percentile(sorted(v), 50) for _, v in sorted(slices.items())]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(q / 100 * len(sorted_values) + 0.5 - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _request_bytes(spec: Spec, call: Call) -> bytes:
    body = call.body
    lines = [
        f"{call.method} {call.path} HTTP/1.1",
        f"Host: {spec.host}:{spec.port}",
        "Accept: application/json",
        "User-Agent: b12-bench",
    ]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + (body or b"")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Reads one whole response; returns the status and whether the server closes."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length: int | None = None
    chunked = close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            close = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, close


async def _raw_worker(spec: Spec, requests: Iterator[bytes], tally: Tally, stop_at: float) -> None:
    reader, writer = await asyncio.open_connection(spec.host, spec.port)
    try:
        for request in requests:
            started = time.perf_counter()
            if started >= stop_at:
                return
            writer.write(request)
            status, close = await _read_response(reader)
            tally.add(started, time.perf_counter(), status)
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection(spec.host, spec.port)
    finally:
        writer.close()


async def _httpx_worker(client: Any, calls: Iterator[Call], tally: Tally, stop_at: float) -> None:
    for call in calls:
        headers = {"Accept": "application/json"}
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        if started >= stop_at:
            return
        response = await client.request(call.method, call.path, content=call.body, headers=headers)
        tally.add(started, time.perf_counter(), response.status_code)


async def run(spec: Spec) -> dict[str, Any]:
    calls = calls_of(spec)
    prebuilt = [_request_bytes(spec, call) for call in calls]
    c = spec.concurrency
    begin = time.perf_counter()
    tally = Tally(begin + spec.warmup_s, begin + spec.warmup_s + spec.duration_s)
    stop_at = tally.measure_to
    if spec.client == "httpx":
        import httpx

        limits = httpx.Limits(
            max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency
        )
        async with httpx.AsyncClient(
            base_url=f"http://{spec.host}:{spec.port}", limits=limits, timeout=30.0
        ) as client:
            workers = [
                _httpx_worker(client, rotation(calls, k, c), tally, stop_at) for k in range(c)
            ]
            outcomes = await asyncio.gather(*workers, return_exceptions=True)
    elif spec.client == "raw":
        workers = [_raw_worker(spec, rotation(prebuilt, k, c), tally, stop_at) for k in range(c)]
        outcomes = await asyncio.gather(*workers, return_exceptions=True)
    else:
        raise ValueError(f"unknown client {spec.client!r}")
    tally.errors = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    lat = sorted(tally.latencies)
    window = spec.duration_s
    ms = 1000.0
    return {
        "client": spec.client,
        "concurrency": spec.concurrency,
        "distinct_requests": len(calls),
        "duration_s": window,
        "warmup_s": spec.warmup_s,
        "count": len(lat),
        "rps": len(lat) / window if window > 0 else 0.0,
        "p50_ms": percentile(lat, 50) * ms,
        "p90_ms": percentile(lat, 90) * ms,
        "p99_ms": percentile(lat, 99) * ms,
        "max_ms": (lat[-1] * ms) if lat else float("nan"),
        "mean_ms": (sum(lat) / len(lat) * ms) if lat else float("nan"),
        "window_s": WINDOW_S,
        "window_p50_ms": [m * ms for m in window_medians(tally.starts, tally.latencies, WINDOW_S)],
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "warmup_statuses": {str(k): v for k, v in sorted(tally.warmup_statuses.items())},
        "errors": tally.errors,
    }


def main() -> int:
    spec = Spec(**json.loads(sys.stdin.read()))
    result = asyncio.run(run(spec))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0 if not result["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
