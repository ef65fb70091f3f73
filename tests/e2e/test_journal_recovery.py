"""A worker killed mid-stream leaves nothing behind: the journal and its recovery sweep.

Each test streams long answers, kills a worker (or a whole instance) with
``kill -9`` while they are in flight, and then checks, against the simulator's
own account state and request log, that every conversation of the dead process
is deleted (within ``LEASE_TTL`` plus a sweep round; the poll deadline adds
slack for a loaded machine), that the streams of the surviving process end
normally, and that no conversation is deleted twice.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid

import orjson
import psutil
import pytest
import requests

from tests.conftest import launch_simulator, start_proxy, stop_proxy, stop_simulator
from tests.simulator.scripts import LONG_SENTENCE
from tests.support.redis_fixture import redis_server, redis_url  # noqa: F401 - fixtures
from tests.support.waiting import wait_until

KEY = "sk-journal-team"
PROMPT = "tell me a long story [[sim:long n=200]]"  # ~10 s at the script's pace
LEASE_TTL = 3.0  # short, yet longer than a stall of a loaded test machine
SWEEP = 1.0
SLACK = 15.0  # poll deadline on top of LEASE_TTL + one round: a busy machine is slow
WHOLE = "".join(LONG_SENTENCE.format(i=i) for i in range(1, 201))
FAST = {"LEASE_TTL": str(LEASE_TTL), "SWEEP_INTERVAL": str(SWEEP), "API_KEYS": f"team:{KEY}"}


class Stream(threading.Thread):
    """One streamed chat completion, read to its end (or until its connection dies)."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.conversation_id = ""
        self.local_port = 0
        self.text = ""
        self.done = False
        self.error: BaseException | None = None
        self.started = threading.Event()

    def run(self) -> None:
        try:
            resp = requests.post(
                f"{self.base}/v1/chat/completions",
                headers={"Authorization": f"Bearer {KEY}"},
                json={
                    "model": "glm-4",
                    "stream": True,
                    "messages": [{"role": "user", "content": PROMPT}],
                },
                stream=True,
                timeout=60,
            )
            assert resp.status_code == 200, resp.text
            self.local_port = resp.raw.connection.sock.getsockname()[1]
            for line in resp.iter_lines():
                if not line.startswith(b"data: "):
                    continue
                data = line[6:]
                if data == b"[DONE]":
                    self.done = True
                    break
                chunk = orjson.loads(data)
                self.conversation_id = chunk["id"]
                for choice in chunk.get("choices") or ():
                    self.text += (choice.get("delta") or {}).get("content") or ""
                self.started.set()
        except BaseException as exc:  # noqa: BLE001 - the killed worker's streams end so
            self.error = exc
        finally:
            self.started.set()


def workers(proxy) -> list[int]:
    return [p.pid for p in psutil.Process(proxy.proc.pid).children()]


def serving_worker(stream: Stream, pids: list[int]) -> int | None:
    """The worker process holding the server side of this stream's connection."""
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.raddr and conn.raddr.port == stream.local_port:
                return pid
    return None


def start_streams(base: str, count: int) -> list[Stream]:
    streams = [Stream(base) for _ in range(count)]
    for stream in streams:
        stream.start()
    for stream in streams:
        assert stream.started.wait(30)
        assert stream.conversation_id, stream.error
    return streams


def delete_mentions(sim) -> dict[str, int]:
    """How many delete calls named each conversation id (any delete method)."""
    counts: dict[str, int] = {}
    for entry in sim.state()["requests"]:
        if "delete" not in entry["path"] or not isinstance(entry.get("body"), dict):
            continue
        body = entry["body"]
        ids = body.get("conversation_ids") or [body.get("conversation_id")]
        for conversation_id in ids:
            counts[conversation_id] = counts.get(conversation_id, 0) + 1
    return counts


def deleted(sim, ids: set[str]) -> bool:
    gone = set()
    for account in sim.state()["accounts"].values():
        gone.update(account["conversations_deleted"])
    return ids <= gone


def assert_survivors_whole(streams: list[Stream]) -> None:
    for stream in streams:
        stream.join(60)
        assert stream.done and stream.error is None, stream.error
        assert stream.text == WHOLE, stream.text[-80:]


@pytest.fixture(scope="module")
def sim():
    simulator = launch_simulator("2026")
    yield simulator
    stop_simulator(simulator)


def tokens(count: int) -> str:
    return ",".join(f"rt-journal-{uuid.uuid4().hex}" for _ in range(count))


def split_by_worker(proxy, streams: list[Stream]) -> dict[int, list[Stream]]:
    pids = workers(proxy)
    by_pid: dict[int, list[Stream]] = {pid: [] for pid in pids}
    for stream in streams:
        pid = wait_until(lambda s=stream: serving_worker(s, pids), 10, "the serving worker")
        by_pid[pid].append(stream)
    return by_pid


def streams_on(proxy, worker: int, count: int) -> list[Stream]:
    """Start ``count`` streams that ``worker`` serves, by pausing every other worker.

    Workers share one listening socket and the kernel picks which of them accepts;
    one worker can take every connection. A paused worker cannot accept, so the one
    left running must. The pause lasts until the new streams' first chunks; callers
    pause a worker with streams in flight only when that worker is about to die, so
    a pause longer than ``LEASE_TTL`` on a slow machine cannot touch a survivor.
    """
    others = [pid for pid in workers(proxy) if pid != worker]
    for pid in others:
        os.kill(pid, signal.SIGSTOP)
    try:
        return start_streams(proxy.base, count)
    finally:
        for pid in others:
            os.kill(pid, signal.SIGCONT)


def test_killing_one_of_two_workers_on_redis_deletes_its_conversations(
    sim,
    tmp_path,
    redis_url,  # noqa: F811 - the fixture
):
    proxy = start_proxy(
        sim, tmp_path, WEB_CONCURRENCY="2", ACCOUNTS=tokens(12), **redis_url.env(), **FAST
    )
    try:
        survivor, victim = wait_until(
            lambda: len(workers(proxy)) == 2 and workers(proxy), 20, "two workers"
        )
        doomed = streams_on(proxy, victim, 3)  # the survivor is paused, idle
        survivors = streams_on(proxy, survivor, 3)  # the victim is paused mid-stream
        streams = survivors + doomed
        by_pid = split_by_worker(proxy, streams)
        assert by_pid == {survivor: survivors, victim: doomed}
        os.kill(victim, signal.SIGKILL)
        orphans = {s.conversation_id for s in doomed}
        wait_until(lambda: deleted(sim, orphans), LEASE_TTL + SWEEP + SLACK, "the orphans")
        assert_survivors_whole(survivors)
        everything = {s.conversation_id for s in streams}
        wait_until(lambda: deleted(sim, everything), 15, "every conversation deleted")
        mentions = delete_mentions(sim)
        assert {cid: mentions.get(cid) for cid in everything} == dict.fromkeys(everything, 1)
    finally:
        stop_proxy(proxy)


def test_a_vanished_instance_on_the_same_redis_is_cleaned_up_by_the_other(
    sim,
    tmp_path,
    redis_url,  # noqa: F811 - the fixture
):
    pool = tokens(8)
    first = start_proxy(sim, tmp_path, ACCOUNTS=pool, **redis_url.env(), **FAST)
    second = start_proxy(sim, tmp_path, ACCOUNTS=pool, **redis_url.env(), **FAST)
    try:
        kept = start_streams(first.base, 3)
        doomed = start_streams(second.base, 3)
        arbiter = second.proc.pid
        for pid in workers(second):
            os.kill(pid, signal.SIGKILL)
        os.kill(arbiter, signal.SIGKILL)
        second.proc.wait(10)
        orphans = {s.conversation_id for s in doomed}
        wait_until(lambda: deleted(sim, orphans), LEASE_TTL + SWEEP + SLACK, "the orphans")
        assert_survivors_whole(kept)
        everything = orphans | {s.conversation_id for s in kept}
        wait_until(lambda: deleted(sim, everything), 15, "every conversation deleted")
        mentions = delete_mentions(sim)
        assert {cid: mentions.get(cid) for cid in everything} == dict.fromkeys(everything, 1)
    finally:
        stop_proxy(first)
        if second.proc.poll() is None:
            stop_proxy(second)


def test_a_restarted_worker_on_the_memory_store_finds_the_journal_file(sim, tmp_path):
    proxy = start_proxy(sim, tmp_path, ACCOUNTS=tokens(4), **FAST)
    try:
        streams = start_streams(proxy.base, 4)
        (worker,) = workers(proxy)
        os.kill(worker, signal.SIGKILL)
        wait_until(
            lambda: [p for p in workers(proxy) if p != worker], 30, "the arbiter's new worker"
        )
        orphans = {s.conversation_id for s in streams}
        wait_until(lambda: deleted(sim, orphans), LEASE_TTL + SWEEP + SLACK, "the orphans")
        mentions = delete_mentions(sim)
        assert {cid: mentions.get(cid) for cid in orphans} == dict.fromkeys(orphans, 1)
        journal = tmp_path.glob("data-*/journal.sqlite3")
        assert list(journal), "the journal lives in DATA_DIR"
    finally:
        stop_proxy(proxy)
