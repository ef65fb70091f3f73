"""Async video job records: liveness and a poll racing the runner's last write.

These drive ``VideoJobs`` on a real ``MemoryStore`` with the interleavings made
deterministic (the end-to-end job flow is in ``test_videos.py``).
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import gevent

from glm_proxy.access.auth import Caller
from glm_proxy.accounts import Account
from glm_proxy.background import video_jobs
from glm_proxy.background.video_jobs import PREFIX, VideoJobs, owner_of
from glm_proxy.errors import ServiceUnavailable
from glm_proxy.store.memory import MemoryStore

CALLER = Caller(accounts=(Account.from_token("rt-jobs"),))


def jobs_on(store: MemoryStore) -> VideoJobs:
    return VideoJobs(SimpleNamespace(store=store, settings=SimpleNamespace(job_ttl=600)))


def running_job(jobs: VideoJobs, job_id: str = "video_race") -> dict:
    job = {"id": job_id, "object": "video", "status": "in_progress", "progress": 50}
    job["owner"] = owner_of(CALLER)
    jobs._save(job)
    jobs.store.set(f"{PREFIX}{job_id}:alive", "1", ttl=60)
    return job


class FinishesDuringPoll(MemoryStore):
    """The runner completes right after the poll has read the job record."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def get(self, key: str) -> str | None:
        value = super().get(key)
        if self.armed and key == PREFIX + "video_race":
            self.armed = False
            jobs = jobs_on(self)
            jobs._update({**jobs._load("video_race"), "status": "completed", "progress": 100})
            self.delete(f"{PREFIX}video_race:alive")  # what the runner's finally does
        return value


def test_a_job_finishing_while_it_is_polled_is_not_reported_lost() -> None:
    store = FinishesDuringPoll()
    jobs = jobs_on(store)
    running_job(jobs)
    store.armed = True
    seen = jobs.get(CALLER, "video_race")
    assert seen["status"] == "completed" and seen["error"] is None


def test_a_job_without_a_live_runner_is_failed() -> None:
    jobs = jobs_on(MemoryStore())
    running_job(jobs, "video_orphan")
    jobs.store.delete(f"{PREFIX}video_orphan:alive")  # its worker died
    seen = jobs.get(CALLER, "video_orphan")
    assert seen["status"] == "failed" and seen["error"]["code"] == "worker_lost"


class FlakyStore(MemoryStore):
    """The first write of an alive key fails, like Redis blinking once."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = 0

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        if key.endswith(":alive") and not self.failed:
            self.failed += 1
            raise ServiceUnavailable("store blinked")
        super().set(key, value, ttl)


def test_the_liveness_beat_survives_a_store_error(monkeypatch) -> None:
    monkeypatch.setattr(video_jobs, "ALIVE_EVERY", 0.01)
    store = FlakyStore()
    beat = gevent.spawn(jobs_on(store)._keep_alive, "video_beat")
    try:
        deadline = time.monotonic() + 5
        while not store.get(f"{PREFIX}video_beat:alive") and time.monotonic() < deadline:
            gevent.sleep(0.01)
        assert store.failed == 1
        assert store.get(f"{PREFIX}video_beat:alive") == "1"  # the beat went on
        assert not beat.dead
    finally:
        beat.kill()
