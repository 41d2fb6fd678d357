"""Kafka subscription benchmark: records/s from a topic to invocations of a one-step handler.

Run from the repository root (needs the broker of `scripts/install-kafka.sh` and the `kafka` extra):

    .venv/bin/python bench/kafka_bench.py                    # 5,000 records, 1 and 8 partitions
    .venv/bin/python bench/kafka_bench.py --records 20000 --partitions 8

For each partition count it starts a single-node KRaft broker (once), `durably serve bench/kafka_app.py:app
--synchronous full` with a fresh data dir and `--kafka-cluster`, produces the records first (keyless, spread
evenly over the partitions), then creates the subscription (`auto.offset.reset=earliest`) and measures, from
the subscription's creation, until

- recorded: `durably_kafka_invocations_created_total` reaches the record count (every invocation committed to
  the store, its offset then committable: the consumer's part), and
- completed: `durably_invocations_completed_total` of the handler reaches it (every invocation ran its step,
  journaled and committed).

Both include the consumer group's join (a few seconds on a fresh group); "steady" leaves it out: records
completed after the first invocation appeared, over the time from then until the last completed.

Each record is one invocation, committed (fsync, group commit) before its offset is. A partition is pipelined:
its invocations are created in offset order without waiting for each other's commit, so they share group
commits and one partition is not bounded by the commit latency.

"per CPU-s" is records over the CPU time (user + system, all threads) the server process used from the
subscription's creation to the last completion: on a loaded machine the wall-clock figures swing with the
other load, this one much less.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kafka.broker import KafkaBroker, free_port  # noqa: E402


def _metric(text: str, name: str, label: str | None = None) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (label is None or label in line):
            m = re.search(r"\s([0-9.e+]+)$", line)
            if m:
                total += float(m.group(1))
    return total


def _produce(bootstrap: str, topic: str, partitions: int, records: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for i in range(records):
        producer.produce(topic, value=str(i).encode(), partition=i % partitions)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0, "produce did not finish"


def _cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (user + system), from /proc: wall-clock swings on a loaded machine, this
    does not."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_one(broker: KafkaBroker, partitions: int, records: int, workdir: Path
            ) -> tuple[float, float, float, float]:
    from confluent_kafka.admin import NewTopic

    topic = f"bench-{partitions}-{int(time.time())}"
    broker.admin().create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(60)
    _produce(broker.bootstrap, topic, partitions, records)
    port, admin_port = free_port(), free_port()
    data = workdir / f"data-{partitions}"
    log = (workdir / f"serve-{partitions}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "durably.cli.main", "serve", "bench/kafka_app.py:app",
                             "--port", str(port), "--admin-port", str(admin_port), "--data-dir", str(data),
                             "--synchronous", "full", "--log-level", "warning",
                             "--kafka-cluster", f"local={broker.bootstrap}"], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        admin = httpx.Client(base_url=f"http://127.0.0.1:{admin_port}", timeout=30)
        deadline = time.monotonic() + 60
        while True:
            try:
                if admin.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"durably serve did not start; see {log.name}")
            time.sleep(0.05)
        start = time.monotonic()
        cpu_start = _cpu_seconds(proc.pid)
        r = admin.post("/subscriptions", json={"source": f"kafka://local/{topic}",
                                               "sink": "service://KafkaSink/one_step",
                                               "options": {"auto.offset.reset": "earliest"}})
        assert r.status_code == 201, r.text
        recorded = completed = None
        first: tuple[float, float] | None = None  # (time, invocations created) when the first ones appear
        while completed is None:
            text = admin.get("/metrics").text
            now = time.monotonic() - start
            created = _metric(text, "durably_kafka_invocations_created_total")
            if first is None and created > 0:
                first = (now, created)
            if recorded is None and created >= records:
                recorded = now
            if _metric(text, "durably_invocations_completed_total", 'handler="one_step"') >= records:
                completed = now
                recorded = recorded or now
            if now > 600:
                raise SystemExit("timed out after 600 s")
            time.sleep(0.05)
        assert first is not None
        # A scrape starved until the end (a loaded machine) saw everything at once: no steady figure then.
        steady = (records - first[1]) / (completed - first[0]) if first[1] < records else float("nan")
        cpu = _cpu_seconds(proc.pid) - cpu_start
        return records / recorded, records / completed, steady, records / cpu
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def run_restate(broker: KafkaBroker, partitions: int, records: int, workdir: Path) -> float:
    """The same workload with restate-server 1.7.12 consuming and `durably endpoint` serving the handler;
    completed/s counted from the handler's side effect (a record may run twice after a retry: at least)."""
    from confluent_kafka.admin import NewTopic

    from tests.interop.conftest import RestateServer

    topic = f"rbench-{partitions}-{int(time.time())}"
    broker.admin().create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(60)
    _produce(broker.bootstrap, topic, partitions, records)
    count_file = workdir / f"restate-count-{partitions}"
    count_file.write_bytes(b"")
    port = free_port()
    log = (workdir / f"endpoint-{partitions}.log").open("wb")
    env = dict(__import__("os").environ, KAFKA_BENCH_COUNT_FILE=str(count_file))
    endpoint = subprocess.Popen([sys.executable, "-m", "durably.cli.main", "endpoint", "bench/kafka_app.py:app",
                                 "--port", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    config = workdir / f"restate-{partitions}.toml"
    config.write_text(f'[[ingress.kafka-clusters]]\nname = "local"\nbrokers = ["{broker.bootstrap}"]\n')
    base = workdir / f"restate-{partitions}"
    base.mkdir()
    server = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("durably endpoint did not start")
            time.sleep(0.05)
        server = RestateServer(base, {"RESTATE_CONFIG": str(config), "RESTATE_LOG_FILTER": "warn"})
        server.register(f"http://127.0.0.1:{port}")
        start = time.monotonic()
        r = httpx.post(f"{server.admin}/subscriptions", timeout=30, json={
            "source": f"kafka://local/{topic}", "sink": "service://KafkaSink/one_step",
            "options": {"auto.offset.reset": "earliest"}})
        assert r.status_code == 201, r.text
        while count_file.stat().st_size < records:
            if time.monotonic() - start > 600:
                raise SystemExit("timed out after 600 s")
            time.sleep(0.05)
        return records / (time.monotonic() - start)
    finally:
        if server is not None:
            server.stop()
        endpoint.terminate()
        endpoint.wait(30)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--partitions", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--restate", action="store_true",
                        help="Also measure restate-server 1.7.12 consuming, driving the handler via durably endpoint.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kafka-bench-") as tmp:
        workdir = Path(tmp)
        broker = KafkaBroker(workdir / "broker")
        broker.start()
        try:
            print(f"{'partitions':>10} {'records':>8} {'recorded/s':>11} {'completed/s':>12} {'steady/s':>9} "
                  f"{'per CPU-s':>10}")
            for partitions in args.partitions:
                rec, done, steady, per_cpu = run_one(broker, partitions, args.records, workdir)
                print(f"{partitions:>10} {args.records:>8} {rec:>11,.0f} {done:>12,.0f} {steady:>9,.0f} "
                      f"{per_cpu:>10,.0f}", flush=True)
            if args.restate:
                print(f"restate-server 1.7.12 -> durably endpoint\n{'partitions':>10} {'records':>8} "
                      f"{'completed/s':>12}")
                for partitions in args.partitions:
                    done = run_restate(broker, partitions, args.records, workdir)
                    print(f"{partitions:>10} {args.records:>8} {done:>12,.0f}", flush=True)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
