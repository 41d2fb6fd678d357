"""The comparison benchmark's workloads, written with DBOS (`dbos` on a SQLite system database).

The twin of `bench/compare/durably_app.py` and `bench/compare/restate_app.py`: the same workloads behind the
same HTTP paths, so the driver (`bench/compare/run.py`) calls all three alike. It is a plain ASGI app (no web
framework, so the HTTP layer costs as little as possible), served by uvicorn from this directory in the DBOS
venv, one process:

    cd bench/compare && ../../.bench/dbos-venv/bin/uvicorn dbos_app:app --host 127.0.0.1 --port PORT \\
        --no-access-log --log-level warning

Environment:

    BENCH_DBOS_DB      path of the SQLite file holding DBOS's system database (required)
    BENCH_GATE_BLOCK   "1": the gate step blocks forever (see below); otherwise it returns at once
    BENCH_GATE_FILE    the file the blocking gate step appends a line "x" to before it blocks
    DBOS__VMID         DBOS's executor id (read by DBOS itself; "local" when unset)

DBOS is launched in the ASGI lifespan startup (so its workflows, recovered ones included, run on uvicorn's
event loop) and destroyed at shutdown. Every workflow and step is `async`; DBOS runs with its defaults.

Endpoints (JSON in, JSON out; the workflow functions' names are what `/bench/count` takes as `name`):

    GET  /health                  {"status": "ok"}
    POST /Bench/echo              workflow `echo`, no steps: returns its input
    POST /Bench/steps1|3|10       workflows `steps1|3|10`: 1, 3 or 10 steps, step i returning i; returns their sum
    POST /Bench/payload           workflow `payload`: one step returning the (~100 KB string) input, so the string
                                  is checkpointed; returns its length
    POST /Bench/fanout            workflow `fanout`, {"n": 100, "ms": 100}: n concurrent durable sleeps of ms;
                                  returns n
    POST /Bench/gate/send         starts workflow `gate` (steps "before", "gate", "after"; the gate step blocks
                                  forever under BENCH_GATE_BLOCK=1, after appending to BENCH_GATE_FILE); 202
                                  {"invocationId": workflow id}. An `idempotency-key` header becomes the workflow id
    POST /Park/wait/send          starts workflow `wait`, which sleeps (durably) an hour and returns "woke"; 202
                                  (it honours `idempotency-key` too)
    POST /Replay/{key}/run/send   starts workflow `replay_run` with id key, input n: n steps, then the gate step;
                                  returns n; 202
    GET  /bench/count?name=&status=   {"count": k}: workflows of that function in that DBOS status (e.g. SUCCESS)
    POST /bench/recover           {"executor": id}: recovers that executor's PENDING workflows in this process, as
                                  DBOS's admin recovery endpoint does, and waits for all of them to finish;
                                  {"recovered": k}. DBOS recovers by re-enqueueing on its internal queue, which
                                  its queue thread polls about once a second, so up to ~1 s of the time is that

Unknown paths answer 404 and bodies that are not JSON 400, both as {"message": ...}.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from dbos import DBOS, DBOSConfig, SetWorkflowID

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DB_PATH = os.environ["BENCH_DBOS_DB"]

# /bench/recover polls for the recovered workflows' end this often; it bounds how much the poll adds to the
# replay time the driver measures, while keeping the poll's reads off DBOS's writers' backs.
RECOVER_POLL_S = 0.005

_config: DBOSConfig = {"name": "bench", "system_database_url": "sqlite:///" + DB_PATH}
DBOS(config=_config)


# ---------------------------------------------------------------- workflows


@DBOS.step(name="step")
async def _step(i: int) -> int:
    return i


@DBOS.step(name="sync_step")
def _sync_step(i: int) -> int:
    return i


async def _steps(n: int) -> int:
    total = 0
    for i in range(n):
        total += await _step(i)
    return total


@DBOS.workflow()
async def echo(x: Any) -> Any:
    return x


@DBOS.workflow()
async def steps1(x: Any) -> int:
    return await _steps(1)


@DBOS.workflow()
async def steps3(x: Any) -> int:
    return await _steps(3)


@DBOS.workflow()
async def steps10(x: Any) -> int:
    return await _steps(10)


@DBOS.workflow()
async def steps10_sync(x: Any) -> int:
    # A sync step on a thread, as Durably runs sync closures (the thread carries the workflow's context).
    total = 0
    for i in range(10):
        total += await asyncio.to_thread(_sync_step, i)
    return total


@DBOS.step(name="keep")
async def _keep(x: str) -> str:
    return x


@DBOS.workflow()
async def payload(x: str) -> int:
    return len(await _keep(x))


@DBOS.workflow()
async def fanout(spec: dict[str, int]) -> int:
    # DBOS numbers each sleep when its task first runs, and gather starts the tasks in order, so the sleeps get
    # the same step ids on every execution; gather waits for all of them, so no choice needs checkpointing
    # (that is what DBOS.asyncio_wait is for).
    n, seconds = spec["n"], spec["ms"] / 1000
    await asyncio.gather(*(DBOS.sleep_async(seconds) for _ in range(n)))
    return n


@DBOS.step(name="before")
async def _before() -> int:
    return 1


@DBOS.step(name="after")
async def _after() -> int:
    return 1


def _mark_blocked() -> None:
    # A plain function, not inlined in the step: one tiny append per blocked workflow is not worth a thread hop,
    # and keeping open() out of coroutines keeps ruff's ASYNC230 check meaningful for the rest of the file.
    with open(os.environ["BENCH_GATE_FILE"], "a") as f:
        f.write("x\n")


@DBOS.step(name="gate")
async def _gate() -> int:
    # Read at call time, like the Durably and Restate twins, so the same code blocks in the process that is
    # about to be killed and passes in the one that recovers.
    if os.environ.get("BENCH_GATE_BLOCK") == "1":
        _mark_blocked()
        await asyncio.Event().wait()  # until the process is killed
    return 1


@DBOS.workflow()
async def gate(x: Any) -> int:
    await _before()
    await _gate()
    return await _after()


@DBOS.workflow()
async def wait() -> str:
    await DBOS.sleep_async(3600)
    return "woke"


@DBOS.workflow()
async def replay_run(n: int) -> int:
    total = await _steps(n)
    await _gate()
    return n if total == sum(range(n)) else -1


# ---------------------------------------------------------------- direct reads of DBOS's system database


class _StatusReader:
    """Read-only queries on DBOS's workflow_status table, on one connection kept in one thread.

    Polled every few milliseconds, so it bypasses DBOS's API (which would load and deserialize whole workflow
    rows through its connection pool) and stays off the event loop, where a reader waiting out a writer's lock
    would stall every request.
    """

    def __init__(self, path: str) -> None:
        self._uri = Path(path).resolve().as_uri() + "?mode=ro"
        self._conn: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-status")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # The same busy timeout as DBOS's own connections: wait out a writer rather than fail.
            self._conn = sqlite3.connect(self._uri, uri=True, timeout=30, isolation_level=None)
        return self._conn

    def _count(self, name: str, status: str) -> int:
        sql = "SELECT COUNT(*) FROM workflow_status WHERE name = ? AND status = ?"
        count: int = self._connection().execute(sql, (name, status)).fetchone()[0]
        return count

    def _unfinished(self, workflow_ids: list[str]) -> int:
        conn = self._connection()
        unfinished = 0
        # Chunked to stay under SQLite's bound-parameter limit whatever the number of workflows.
        for start in range(0, len(workflow_ids), 500):
            chunk = workflow_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT COUNT(*) FROM workflow_status WHERE status IN ('PENDING', 'ENQUEUED') "
                f"AND workflow_uuid IN ({marks})"
            )
            unfinished += conn.execute(sql, chunk).fetchone()[0]
        return unfinished

    async def count(self, name: str, status: str) -> int:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._count, name, status)

    async def unfinished(self, workflow_ids: list[str]) -> int:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._unfinished, workflow_ids)

    def close(self) -> None:
        def close_connection() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._thread.submit(close_connection).result()
        self._thread.shutdown()


_status = _StatusReader(DB_PATH)


# ---------------------------------------------------------------- HTTP


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _start(workflow: Callable[..., Awaitable[Any]], workflow_id: str | None, *args: Any) -> tuple[int, Any]:
    if workflow_id:
        with SetWorkflowID(workflow_id):
            handle = await DBOS.start_workflow_async(workflow, *args)
    else:
        handle = await DBOS.start_workflow_async(workflow, *args)
    # start_workflow_async returns once the workflow's status row is committed, so it is durable from here on.
    return 202, {"invocationId": handle.get_workflow_id()}


async def _result(workflow_id: str) -> Any:
    handle = await DBOS.retrieve_workflow_async(workflow_id)
    return await handle.get_result()


async def _recover(spec: Any) -> int:
    if not isinstance(spec, dict) or not isinstance(spec.get("executor"), str):
        raise _HTTPError(400, 'expected {"executor": "<executor id>"}')
    # DBOS re-enqueues each recovered workflow (a blocking write per workflow) for its queue thread to run.
    handles = await asyncio.to_thread(DBOS._recover_pending_workflows, [spec["executor"]])
    workflow_ids = [handle.get_workflow_id() for handle in handles]
    # Their end is only visible in the database, hence a poll: one query for all of them, rather than DBOS's
    # per-handle get_result polling (a read per workflow, once a second by default).
    while workflow_ids:
        if not await _status.unfinished(workflow_ids):
            break
        await asyncio.sleep(RECOVER_POLL_S)
    # Each result is final by now; fetching it surfaces a workflow that failed instead of finishing.
    await asyncio.gather(*(_result(workflow_id) for workflow_id in workflow_ids))
    return len(workflow_ids)


async def _count(query: bytes) -> int:
    params = parse_qs(query.decode("latin-1"))
    name, status = params.get("name"), params.get("status")
    if not name or not status:
        raise _HTTPError(400, "expected ?name=<workflow function>&status=<DBOS status>")
    return await _status.count(name[0], status[0])


_SYNC_WORKFLOWS: dict[str, Callable[[Any], Awaitable[Any]]] = {
    "/Bench/echo": echo,
    "/Bench/steps1": steps1,
    "/Bench/steps3": steps3,
    "/Bench/steps10": steps10,
    "/Bench/steps10_sync": steps10_sync,
    "/Bench/payload": payload,
    "/Bench/fanout": fanout,
}


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _HTTPError(400, "client disconnected")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


async def _route(scope: Scope, receive: Receive) -> tuple[int, Any]:
    method, path = scope["method"], scope["path"]
    if method == "GET":
        if path == "/health":
            return 200, {"status": "ok"}
        if path == "/bench/count":
            return 200, {"count": await _count(scope["query_string"])}
        raise _HTTPError(404, f"no route for GET {path}")
    if method != "POST":
        raise _HTTPError(404, f"no route for {method} {path}")

    raw = await _read_body(receive)
    try:
        # An empty body stands for "no input", which the /send paths that ignore their body are often sent.
        arg = json.loads(raw) if raw else None
    except ValueError as e:
        raise _HTTPError(400, f"body is not JSON: {e}") from None

    workflow = _SYNC_WORKFLOWS.get(path)
    if workflow is not None:
        return 200, await workflow(arg)
    if path == "/Bench/gate/send":
        return await _start(gate, _header(scope, b"idempotency-key"), arg)
    if path == "/Park/wait/send":
        return await _start(wait, _header(scope, b"idempotency-key"))
    parts = path.split("/")
    if len(parts) == 5 and parts[1] == "Replay" and parts[3:] == ["run", "send"] and parts[2]:
        if not isinstance(arg, int) or isinstance(arg, bool):
            raise _HTTPError(400, "expected an integer step count")
        return await _start(replay_run, parts[2], arg)
    if path == "/bench/recover":
        return 200, {"recovered": await _recover(arg)}
    raise _HTTPError(404, f"no route for POST {path}")


async def _respond(send: Send, status: int, body: Any) -> None:
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                # Launched from inside uvicorn's running loop, DBOS adopts that loop for the workflows it starts
                # itself (recovered and dequeued ones), so they share it with the request handlers.
                DBOS.launch()
            except Exception as e:
                await send({"type": "lifespan.startup.failed", "message": repr(e)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            DBOS.destroy()
            _status.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    try:
        status, body = await _route(scope, receive)
    except _HTTPError as e:
        status, body = e.status, {"message": str(e)}
    except Exception as e:
        status, body = 500, {"message": f"{type(e).__name__}: {e}"}
    await _respond(send, status, body)
