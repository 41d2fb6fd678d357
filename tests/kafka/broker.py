"""A real single-node Apache Kafka broker (KRaft, broker and controller in one JVM) for the Kafka tests.

`scripts/install-kafka.sh` puts the broker's jars in `.kafka/lib/`. `KafkaBroker` writes a `server.properties`
on free loopback ports in a directory of its own, formats the log dir with `kafka.tools.StorageTool` and runs
`kafka.Kafka`; it can stop the broker cleanly, `kill -9` it, and start it again on the same ports and log dir
(what a crashed broker coming back looks like to its clients).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
KAFKA_LIB = ROOT / ".kafka" / "lib"

# The machine has 2 cores shared by several test runs: a small heap, a quick-to-start JIT, a serial GC.
JVM_OPTS = ["-Xmx512m", "-Xms128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
            "-Dorg.slf4j.simpleLogger.showDateTime=true", "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS"]


# A test process that crashes skips its teardown: have the kernel kill the broker when its parent dies, so
# no JVM outlives the tests (util-linux `setpriv`, where there is one).
_DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []


class BrokerNotInstalled(RuntimeError):
    """The broker's jars are missing: run scripts/install-kafka.sh."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_installed() -> None:
    """Raise `BrokerNotInstalled` unless `.kafka/lib` holds the broker (the tests fail, never skip, without it)."""
    if not (KAFKA_LIB / ".installed").is_file() or not any(KAFKA_LIB.glob("kafka_2.13-*.jar")):
        raise BrokerNotInstalled(
            f"no Kafka broker in {KAFKA_LIB}: run scripts/install-kafka.sh (scripts/test.sh does) to fetch it"
        )


class KafkaBroker:
    """One KRaft broker on `127.0.0.1:<port>` with its data under `workdir`."""

    def __init__(self, workdir: Path) -> None:
        check_installed()
        self.workdir = workdir
        self.port = free_port()
        self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_dir = workdir / "data"
        self.config = workdir / "server.properties"
        self.log_file = workdir / "broker.log"
        self.cluster_id = _cluster_id()
        self.proc: subprocess.Popen[bytes] | None = None
        self._admin: Any = None
        self.starts = 0
        self._write_config()

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dir),
            "num.partitions": "1",
            # Tests create their topics with the partition counts they need.
            "auto.create.topics.enable": "false",
            # One node: every internal topic has a single replica.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # A new consumer group starts at once instead of waiting 3 s for more members.
            "group.initial.rebalance.delay.ms": "0",
            # After a kill -9 the restarted broker cannot register until the dead incarnation's session expires
            # (9 s by default): keep that short so a restart takes seconds.
            "broker.session.timeout.ms": "2000",
            "broker.heartbeat.interval.ms": "500",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "log.flush.interval.messages": "1000000",
        }
        self.config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))

    def _java(self, main: str, *args: str) -> list[str]:
        return ["java", *JVM_OPTS, f"-Dkafka.logs.dir={self.workdir}", "-cp", f"{KAFKA_LIB}/*", main, *args]

    def format(self) -> None:
        """Format the log dir for a new standalone cluster (done once, before the first start)."""
        out = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "--standalone", "-t", self.cluster_id,
                       "-c", str(self.config)),
            capture_output=True, timeout=120,
        )
        if out.returncode != 0:
            raise RuntimeError(f"kafka-storage format failed ({out.returncode}): {out.stdout!r} {out.stderr!r}")

    def start(self, timeout: float = 90.0) -> None:
        """Start the broker (formatting first if needed) and wait until it answers a metadata request."""
        if self.proc is not None and self.proc.poll() is None:
            return
        if not (self.log_dir / "meta.properties").exists():
            self.format()
        log = self.log_file.open("ab")
        self.proc = subprocess.Popen([*_DIE_WITH_PARENT, *self._java("kafka.Kafka", str(self.config))], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.starts += 1
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Poll with a metadata request until the broker names itself and its controller, up to `timeout`."""
        admin = self._new_admin()
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
            try:
                meta = admin.list_topics(timeout=1.0)
                if meta.brokers and meta.controller_id >= 0:
                    self._admin = admin
                    return
            except Exception as exc:  # KafkaException until the listener is up
                last = exc
        raise RuntimeError(f"broker not ready within {timeout:.0f} s (last error: {last}):\n{self.log_tail()}")

    def _new_admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        # log_level 0: the refused connections while the broker starts are expected, not worth a line each.
        return AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0,
                            "socket.connection.setup.timeout.ms": 1000})

    def admin(self) -> Any:
        """An admin client of the running broker, kept for the broker's run (tests poll through it)."""
        if self._admin is None:
            self._admin = self._new_admin()
        return self._admin

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the broker cleanly (SIGTERM), or kill it if it does not exit within `timeout`."""
        proc, self.proc, self._admin = self.proc, None, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def kill9(self) -> None:
        """`kill -9` the broker: no shutdown, no flush; the log dir stays as the crash left it."""
        proc, self.proc, self._admin = self.proc, None, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def restart(self, timeout: float = 90.0) -> None:
        """Start again on the same ports and log dir (after `stop` or `kill9`)."""
        self.start(timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no broker log)"


def _cluster_id() -> str:
    # Kafka cluster ids are 16 random bytes in URL-safe base64 without padding (22 characters). One that
    # starts with "-" would be read as an option by the storage tool's argument parser.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if cid[0].isalnum():
            return cid
