"""Whole-pipeline figures: sustained events/s collector -> ClickHouse with every sink on, resident
memory of each component, and the agent overhead of the hooks per tool call.

    .venv/bin/python bench/whole_pipeline.py [--seconds 60] [--warmup 15] [--rate 0]
        [--skip-throughput] [--skip-overhead] [--hook-pairs 100]

Needs the local stack (Kafka 127.0.0.1:9092, ClickHouse 9000, moto S3 5000; never stopped here).
Starts a private pipeline (bench/_pipeline_stack.py): worker, clickhouse-sink, archive-sink
(file:// in a temp folder), alerts, gateway, collector, as `python -m pipeline.cli <command>`
with private topics, groups, app id, ports and a freshly migrated private ClickHouse database;
every other setting at its default. Then:

1. Throughput: a load process (bench/_pipeline_load.py) POSTs OTLP/protobuf log batches (1,000
   Claude Code-shaped records, 1.2 events per record) to the collector, open loop at ``--rate``
   events/s or, with 0, back to back on 4 connections, for ``--warmup`` + ``--seconds``. Every
   second it samples rows in the private telemetry_events table, the collector's accepted
   (spooled) and Kafka-acknowledged counters, the worker's ``agentwatch_worker_messages_total``,
   the archive's events written, and every 5 s each component's RSS and CPU. Rates are over
   the ``--seconds`` after the warm-up. At the end of the load: the collector's spool backlog
   (/health), consumer lag of every group, events acknowledged but not yet in ClickHouse; then
   it waits for the pipeline to drain (rows/s while draining: the pipeline without the load) and
   for every consumer group to catch up (the worker's widgets/patterns stage, the archive).
   "Kept up" = rows/s into ClickHouse >= 97% of events/s acknowledged by Kafka and the spool
   backlog <= 1 s of them.
2. Memory: RSS per component (process tree: the collector's OTLP worker, a worker pool) during
   the measured window (median, max) and once idle after the drain (RSS and PSS).
3. Agent overhead (bench/_pipeline_overhead.py): command hook and HTTP hook per tool call
   (Pre + Post), wall and CPU, as a share of tool-call durations.

Prints progress lines, then one JSON document of figures. Cleans up processes, topics, database
and temp folder even on failure (``--keep`` keeps the folder with the component logs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _pipeline_overhead import measure as measure_overhead
from _pipeline_stack import PrivatePipeline

from pipeline.settings import ClickHouseSettings

HERE = Path(__file__).resolve().parent
SAMPLE_S = 1.0
RSS_EVERY_S = 5.0
ACKED = "agentwatch_producer_events_produced_total"
SPOOLED = "agentwatch_producer_events_spooled_total"
VALIDATED = "agentwatch_worker_messages_total"
DEAD = "agentwatch_worker_dead_letters_total"
ARCHIVED = "agentwatch_archive_events_written_total"
CAUGHT_UP_LAG = 12


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_avg() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def events_per_record(batch: int) -> float:
    """How many pipeline events the collector maps one record of the load's mix to."""
    from _pipeline_load import Batches
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from producers.collector.otlp import map_logs

    body = Batches(batch, 64, "calibrate").next()
    return len(map_logs(ExportLogsServiceRequest.FromString(body), 0)) / batch


def sample(pipe: PrivatePipeline, conn: Any, t0: float) -> dict[str, float]:
    parts = pipe.parts
    return {"t": time.monotonic() - t0, "rows": pipe.ch_rows(conn),
            **parts["collector"].metric(ACKED, SPOOLED),
            **parts["worker"].metric(VALIDATED, DEAD),
            **parts["archive-sink"].metric(ARCHIVED)}


def resources(pipe: PrivatePipeline) -> dict[str, tuple[float, int, float]]:
    """Per component: (RSS MiB of the tree, processes, CPU seconds so far)."""
    out = {}
    for name, part in pipe.parts.items():
        rss, n = part.rss_mib()
        out[name] = (rss, n, part.cpu_s())
    return out


def watch(args: argparse.Namespace, pipe: PrivatePipeline, conn: Any, total_s: float,
          load: subprocess.Popen[bytes]) -> tuple[list[dict[str, float]], list[Any],
                                                  list[dict[str, float]], list[Any], str]:
    """Samples every second while the load runs: (samples, RSS samples, first and last sample
    of the measured window, resources at its start, load average at its start)."""
    t0 = time.monotonic()
    samples: list[dict[str, float]] = []
    rss: list[dict[str, tuple[float, int, float]]] = []
    window: list[dict[str, float]] = []  # the first and the latest sample in the measured window
    cpu_window: list[dict[str, tuple[float, int, float]]] = []
    next_rss, next_log = args.warmup, 0.0
    load_in_window = ""
    # waitid with WNOWAIT leaves the load unreaped, for wait4 to read its CPU time below.
    while os.waitid(os.P_PID, load.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        now = sample(pipe, conn, t0)
        samples.append(now)
        if args.warmup <= now["t"] <= total_s:
            if not window:
                window = [now, now]
                cpu_window.append(resources(pipe))
                load_in_window = load_avg()
            window[1] = now
            if now["t"] >= next_rss:
                rss.append(resources(pipe))
                next_rss += RSS_EVERY_S
        if now["t"] >= next_log:
            log(f"t={now['t']:5.1f}s rows={now['rows']:,} acked={now[ACKED]:,.0f} "
                f"validated={now[VALIDATED]:,.0f} load {load_avg()}")
            next_log += 10.0
        time.sleep(max(0.0, SAMPLE_S - (time.monotonic() - t0 - now["t"])))
    return samples, rss, window, cpu_window, load_in_window


def throughput(args: argparse.Namespace, pipe: PrivatePipeline, conn: Any) -> dict[str, Any]:
    factor = events_per_record(args.batch)
    records_rate = args.rate / factor if args.rate > 0 else 0.0
    total_s = args.warmup + args.seconds
    log(f"load: {'as fast as accepted' if not args.rate else f'{args.rate:,.0f} events/s'} for "
        f"{args.warmup:g} s warm-up + {args.seconds:g} s measured ({factor:.2f} events/record), "
        f"load average {load_avg()}")
    load = subprocess.Popen(
        [sys.executable, str(HERE / "_pipeline_load.py"), "--port", str(pipe.parts["collector"].port),
         "--rate", str(records_rate), "--seconds", str(total_s), "--batch", str(args.batch),
         "--conns", str(args.conns), "--prefix", pipe.prefix], stdout=subprocess.PIPE)
    try:
        samples, rss, window, cpu_window, load_in_window = watch(args, pipe, conn, total_s, load)
    except BaseException:
        load.kill()
        load.wait()
        raise
    assert load.stdout is not None
    stdout = load.stdout.read()
    _, status, usage = os.wait4(load.pid, 0)
    load.returncode = os.waitstatus_to_exitcode(status)
    sent = json.loads(stdout.decode().strip().splitlines()[-1])
    sent["cpu_cores"] = round((usage.ru_utime + usage.ru_stime) / sent["seconds"], 2)
    if len(window) < 2:
        raise SystemExit("the load ended before the measured window: nothing to report")
    cpu_window.append(resources(pipe))
    first, last = window
    backlog = int(pipe.parts["collector"].health().get("spool_backlog_events") or 0)
    end = {"spool_backlog_events": backlog,
           "acked_not_in_clickhouse": int(last[ACKED] - last[DEAD] - last["rows"]),
           "consumer_lag": pipe.lag()}
    dt = last["t"] - first["t"]

    def rate(key: str) -> float:
        return round((last[key] - first[key]) / dt, 1)

    in_ch = rate("rows")
    acked = rate(ACKED)
    kept_up = in_ch >= 0.97 * acked and backlog <= max(acked, 1000)
    series = [s for s in samples if first["t"] <= s["t"] <= last["t"]]
    slices, mark = [], series[0]
    for s in series:
        if s["t"] - mark["t"] >= 5.0:
            slices.append(round((s["rows"] - mark["rows"]) / (s["t"] - mark["t"])))
            mark = s
    cpu = {name: round((cpu_window[1][name][2] - cpu_window[0][name][2]) / dt, 2)
           for name in pipe.parts}
    drain = wait_drain(args, pipe, conn)
    return {
        "window_s": round(dt, 1), "load_average_at_window_start": load_in_window,
        "load_average_at_window_end": load_avg(),
        "events_per_record": factor,
        "load_process": {**sent, "records_per_s": round(sent["records"] / sent["seconds"])},
        "events_per_s": {"accepted_by_collector": rate(SPOOLED),
                         "acknowledged_by_kafka": acked,
                         "validated_by_worker": rate(VALIDATED),
                         "archived": rate(ARCHIVED),
                         "in_clickhouse": in_ch},
        "clickhouse_rows_per_s_by_5s": slices,
        "at_end_of_load": end,
        "kept_up": kept_up,
        "kept_up_rule": ("rows/s into ClickHouse >= 97% of events/s acknowledged by Kafka, and "
                         "the collector's spool backlog <= 1 s of them"),
        "cpu_cores_used_in_window": {**cpu, "total": round(sum(cpu.values()), 2)},
        "cpu_us_per_event": {n: round(c / in_ch * 1e6, 1) for n, c in cpu.items()} if in_ch else {},
        "rss_mib_in_window": {name: {"median": round(statistics.median(r[name][0] for r in rss), 1),
                                     "max": round(max(r[name][0] for r in rss), 1),
                                     "processes": rss[-1][name][1]} for name in pipe.parts}
        if rss else {},
        "drain": drain,
    }


def wait_drain(args: argparse.Namespace, pipe: PrivatePipeline, conn: Any) -> dict[str, Any]:
    """Until every acknowledged event (less dead letters) is a ClickHouse row and the spool is
    empty, then until every consumer group has caught up (the worker's widgets/patterns stage,
    the archive's 30 s segments), at most ``--drain-timeout`` s in all."""
    t0 = time.monotonic()
    start = now = sample(pipe, conn, t0)
    in_ch_s = None
    while time.monotonic() - t0 < args.drain_timeout:
        backlog = pipe.parts["collector"].health().get("spool_backlog_events") or 0
        now = sample(pipe, conn, t0)
        if backlog == 0 and now["rows"] >= now[ACKED] - now[DEAD]:
            in_ch_s = now["t"]
            break
        time.sleep(1.0)
    drained = now["rows"] - start["rows"]
    elapsed = max(now["t"] - start["t"], 1e-3)
    log(f"drain: {drained:,} rows in {elapsed:.1f} s "
        f"({'complete' if in_ch_s is not None else 'NOT complete'})")
    lag: dict[str, int | None] = {}
    groups_s = None
    while in_ch_s is not None and time.monotonic() - t0 < args.drain_timeout:
        lag = pipe.lag()
        # A transactional topic keeps up to one commit marker per partition after the last record.
        if all(v is not None and v <= CAUGHT_UP_LAG for v in lag.values()):
            groups_s = time.monotonic() - t0
            break
        time.sleep(2.0)
    log(f"every consumer group caught up {groups_s:.1f} s after the load" if groups_s is not None
        else f"consumer groups NOT caught up: {lag}")
    return {"complete": in_ch_s is not None, "seconds": round(elapsed, 1), "rows": int(drained),
            "rows_per_s": round(drained / elapsed) if drained else 0,
            "rows_total": int(now["rows"]), "acked_total": int(now[ACKED]),
            "dead_letters": int(now[DEAD]),
            "all_groups_caught_up_after_s": None if groups_s is None else round(groups_s, 1),
            "lag_left": {k: v for k, v in lag.items() if v} if groups_s is None else {}}


def idle_memory(pipe: PrivatePipeline) -> dict[str, dict[str, float]]:
    return {name: {"rss_mib": round(part.rss_mib()[0], 1), "pss_mib": round(part.pss_mib(), 1),
                   "processes": part.rss_mib()[1]} for name, part in pipe.parts.items()}


def headline(result: dict[str, Any]) -> list[str]:
    """The figures the issue asks for, in a few lines (the JSON below has everything)."""
    lines = [f"load average before {result['load_average_before']}, after "
             f"{result.get('load_average_after', '?')}; {result['cpus']} CPUs"]
    if tp := result.get("throughput"):
        eps, end = tp["events_per_s"], tp["at_end_of_load"]
        lines += [
            f"sustained whole pipeline (rows into ClickHouse over {tp['window_s']} s): "
            f"{eps['in_clickhouse']:,.0f} events/s (target >= 10,000/s: "
            f"{'met' if eps['in_clickhouse'] >= 10_000 else 'NOT met'}); offered "
            f"{tp['load_process']['records_per_s'] * tp['events_per_record']:,.0f} events/s "
            f"(load process {tp['load_process']['cpu_cores']} cores)",
            f"  collector accepted {eps['accepted_by_collector']:,.0f}/s, Kafka acked "
            f"{eps['acknowledged_by_kafka']:,.0f}/s, worker validated "
            f"{eps['validated_by_worker']:,.0f}/s, archived {eps['archived']:,.0f}/s",
            f"  kept up: {'yes' if tp['kept_up'] else 'no'} (spool backlog "
            f"{end['spool_backlog_events']:,}, acked not yet in ClickHouse "
            f"{end['acked_not_in_clickhouse']:,}, worker ingest lag "
            f"{end['consumer_lag'].get('worker:ingest')}, widgets/patterns stage lag "
            f"{end['consumer_lag'].get('worker:events')}); drain after the load: "
            f"{tp['drain']['rows_per_s']:,} rows/s, every group caught up after "
            f"{tp['drain']['all_groups_caught_up_after_s']} s",
            f"  CPU cores in the window: {tp['cpu_cores_used_in_window']}",
        ]
        for name, r in tp["rss_mib_in_window"].items():
            idle = result["memory_idle"][name]
            lines.append(f"  RSS {name}: {r['median']:.0f} MiB median / {r['max']:.0f} max under "
                         f"load, {idle['rss_mib']:.0f} MiB idle (PSS {idle['pss_mib']:.0f}), "
                         f"{r['processes']} process(es)")
    elif mem := result.get("memory_idle"):
        lines += [f"  RSS {n}: {m['rss_mib']:.0f} MiB idle (PSS {m['pss_mib']:.0f})"
                  for n, m in mem.items()]
    if ov := result.get("agent_overhead"):
        typical = ov["typical_tool_call"]
        label = next(k for k in ov["command_hook"]["share_of_tool_call"] if "typical" in k)
        for kind in ("command_hook", "http_hook"):
            call, share = ov[kind]["tool_call"], ov[kind]["share_of_tool_call"][label]
            cpu = f", CPU {call['cpu_ms_p50']} ms" if "cpu_ms_p50" in call else ""
            lines.append(f"{kind} per tool call (Pre + Post): wall p50 {call['wall_ms_p50']} ms, "
                         f"p99 {call['wall_ms_p99']} ms{cpu}; share of a typical "
                         f"{typical['seconds']:g} s tool call: p50 {share['wall_p50']}, p99 "
                         f"{share['wall_p99']} (target < 5%)")
        lines.append(f"  typical = {typical['rule']} ({typical['source']}: {typical['samples']})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured load time")
    parser.add_argument("--warmup", type=float, default=15.0, help="load before measuring")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="offered events/s, open loop; 0 = as fast as the collector accepts")
    parser.add_argument("--batch", type=int, default=1000, help="OTLP records per request")
    parser.add_argument("--conns", type=int, default=4, help="load connections")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--idle-wait", type=float, default=10.0,
                        help="seconds idle before the idle memory sample")
    parser.add_argument("--hook-pairs", type=int, default=100,
                        help="Pre+Post hook pairs per hook kind (2 runs each)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder and its logs")
    args = parser.parse_args()

    from pipeline.migrations import client

    clickhouse = ClickHouseSettings()
    workdir = Path(tempfile.mkdtemp(prefix="aw-bench-pipeline-"))
    pipe = PrivatePipeline(args.bootstrap, clickhouse, workdir)
    # SIGTERM (a timeout, a colleague's Ctrl-C on the group) must still reach the cleanup.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result: dict[str, Any] = {"cpus": os.cpu_count(), "load_average_before": load_avg(),
                              "private_pipeline": pipe.prefix}
    conn = None
    try:
        log(f"starting private pipeline {pipe.prefix} in {workdir}, load average {load_avg()}")
        started = time.monotonic()
        pipe.start()
        result["startup_s"] = round(time.monotonic() - started, 1)
        log(f"pipeline up in {result['startup_s']} s")
        conn = client(clickhouse, pipe.database)
        result["rss_mib_after_start"] = {n: round(p.rss_mib()[0], 1) for n, p in pipe.parts.items()}
        if not args.skip_throughput:
            result["throughput"] = throughput(args, pipe, conn)
        time.sleep(args.idle_wait)
        result["memory_idle"] = idle_memory(pipe)
        if not args.skip_overhead:
            result["agent_overhead"] = measure_overhead(pipe.parts["collector"], args.hook_pairs,
                                                        log)
        result["load_average_after"] = load_avg()
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.disconnect()
        exits = pipe.stop()
        result["exit_codes"] = exits
        result["log_warnings"] = {name: kinds for name, part in pipe.parts.items()
                                  if (kinds := part.problems())}
        pipe.cleanup(keep_dir=args.keep)
        if args.keep:
            log(f"kept {workdir}")
        print(json.dumps(result, indent=1), flush=True)
        with contextlib.suppress(KeyError, StopIteration, TypeError):
            print("\n".join(headline(result)), flush=True)


if __name__ == "__main__":
    main()
