"""gunicorn settings for ``bench_core.py --worker-figures``: the usual ones, plus the
worker's own share of a stream's latency, measured inside the worker.

Why: on a small machine the client, the simulator and the worker share the
cores, so a first-token figure measured by the client carries the other two
processes' pauses. These figures are the worker's alone. The worker appends
one line per fact to ``GLM_BENCH_WORKER_FIGURES`` (flushed every second),
stamped with ``time.time()`` so that the benchmark can pick a phase's lines:

- ``request T MS``: from gunicorn handing the request to the app to the
  producer's first wait (its upstream request sent, or its place in the
  account queue taken);
- ``deliver T MS``: from the first delta handed to the job to its bytes written
  to the client;
- ``stall T MS``: the event loop ran nothing else for MS milliseconds over a
  10 ms sleep (only stalls over 10 ms are written);
- ``gcN T MS``: a collection of generation N took MS milliseconds (only those
  over 2 ms are written): how much of the stalls the cyclic collector makes.

The wrappers cost a few microseconds per request, the stall watch a hundred
wake-ups a second: CPU figures from such a run are not comparable.
"""

import os
import time
from pathlib import Path

exec((Path(__file__).resolve().parents[2] / "gunicorn.conf.py").read_text())  # noqa: S102

_post_worker_init = post_worker_init  # noqa: F821 - defined by the exec above
_SLEEP = 0.010


def post_worker_init(worker):  # noqa: F811
    _post_worker_init(worker)
    import gevent
    from gunicorn.http import wsgi
    from gunicorn.workers import base_async

    from glm_proxy.services import answer

    out = open(os.environ["GLM_BENCH_WORKER_FIGURES"], "a")  # noqa: SIM115 - the worker's life

    def note(kind: str, seconds: float) -> None:
        out.write(f"{kind} {time.time():.3f} {seconds * 1000:.3f}\n")

    handle = base_async.AsyncWorker.handle_request

    def handle_request(*args, **kwargs):
        gevent.getcurrent().bench_arrived = time.perf_counter()
        return handle(*args, **kwargs)

    start = answer.AnswerJob.start

    def timed_start(job, *args, **kwargs):
        result = start(job, *args, **kwargs)
        gevent.getcurrent().bench_job = job  # the request's greenlet writes its body
        arrived = getattr(gevent.getcurrent(), "bench_arrived", None)
        if arrived is not None:
            note("request", time.perf_counter() - arrived)
        return result

    put = answer.AnswerJob.put

    def timed_put(job, item):
        if "bench_put" not in job.__dict__:
            job.bench_put = time.perf_counter()
        return put(job, item)

    write = wsgi.Response.write

    def timed_write(response, data):
        result = write(response, data)
        job = getattr(gevent.getcurrent(), "bench_job", None)
        put_at = job.__dict__.get("bench_put") if job is not None else None
        if data and put_at is not None and not job.__dict__.get("bench_written"):
            job.bench_written = True
            note("deliver", time.perf_counter() - put_at)
        return result

    def watch_stalls():
        while True:
            before, cpu = time.perf_counter(), time.thread_time()
            gevent.sleep(_SLEEP)
            late = time.perf_counter() - before - _SLEEP
            if late > 0.010:
                note("stall", late)
                note("stallcpu", time.thread_time() - cpu)

    def flush():
        while True:
            gevent.sleep(1.0)
            out.flush()

    collecting: list[float] = []

    def on_gc(step: str, info: dict) -> None:
        if step == "start":
            collecting.append(time.perf_counter())
            collecting.append(time.thread_time())
        elif collecting:
            cpu = time.thread_time() - collecting.pop()
            took = time.perf_counter() - collecting.pop()
            if took > 0.002:
                note(f"gc{info['generation']}", took)
                note(f"gc{info['generation']}cpu", cpu)

    import gc

    gc.callbacks.append(on_gc)
    base_async.AsyncWorker.handle_request = handle_request
    answer.AnswerJob.start = timed_start
    answer.AnswerJob.put = timed_put
    wsgi.Response.write = timed_write
    gevent.spawn(watch_stalls)
    gevent.spawn(flush)
