"""gunicorn settings for ``bench_first_token.py``: the usual ones, timestamps on the request path.

Each streamed chat request appends one line to ``GLM_PROXY_TIMELINE``: the
``perf_counter_ns`` (one clock for every process on the machine) at which the
worker's handler got the request, read the body, sent the upstream request,
had the upstream's head, handed the first delta to the job and wrote the first
chunk (gunicorn's first write of body bytes). The wrappers cost a few
microseconds each.
"""

import os
import time
from pathlib import Path

exec((Path(__file__).resolve().parents[2] / "gunicorn.conf.py").read_text())  # noqa: S102

_post_worker_init = post_worker_init  # noqa: F821 - defined by the exec above
_marks: list[tuple[str, int]] = []


def _mark_around(owner, name: str, label: str, *, after: bool = False) -> None:
    original = getattr(owner, name)

    def timed(*args, **kwargs):
        if not after:
            _marks.append((label, time.perf_counter_ns()))
        result = original(*args, **kwargs)
        if after:
            _marks.append((label, time.perf_counter_ns()))
        return result

    setattr(owner, name, timed)


def _mark_first_body_write(response_class) -> None:
    original = response_class.write

    def write(self, arg):
        result = original(self, arg)
        if arg:
            _marks.append(("first chunk written", time.perf_counter_ns()))
        return result

    response_class.write = write


def post_worker_init(worker):  # noqa: F811
    _post_worker_init(worker)
    from gunicorn.http import wsgi
    from gunicorn.workers import base_async

    import glm_proxy.api.chat as chat
    from glm_proxy.services import answer
    from glm_proxy.upstream import client

    _mark_around(chat, "read_json", "body read", after=True)
    _mark_around(client.UpstreamClient, "_send", "upstream request")
    _mark_around(client.UpstreamClient, "_send", "upstream head", after=True)
    _mark_around(answer.AnswerJob, "put", "first delta")
    _mark_first_body_write(wsgi.Response)
    out = open(os.environ["GLM_PROXY_TIMELINE"], "a")  # noqa: SIM115 - open for the worker's life
    handle = base_async.AsyncWorker.handle_request

    def handle_request(*args, **kwargs):
        _marks.clear()
        _marks.append(("request at the app", time.perf_counter_ns()))
        try:
            return handle(*args, **kwargs)
        finally:
            first: dict[str, int] = {}
            for label, at in _marks:
                first.setdefault(label, at)
            if "first chunk written" in first:
                marks = (f"{label.replace(' ', '_')}={at}" for label, at in first.items())
                out.write(" ".join(marks) + "\n")
                out.flush()

    base_async.AsyncWorker.handle_request = handle_request
