"""gunicorn settings for ``bench_core.py --profile``: the usual ones, worker under a profiler.

``--profile x.yappi``: yappi on CPU time, greenlet-aware (the useful one under
gevent; ``pip install yappi``); ``x.prof``: cProfile stats; ``x.txt``/``x.html``:
pyinstrument (sampling; greenlet waits show as the hub's loop).
"""

import os
from pathlib import Path

exec((Path(__file__).resolve().parents[2] / "gunicorn.conf.py").read_text())  # noqa: S102

_post_worker_init = post_worker_init  # noqa: F821 - defined by the exec above
_worker_exit = worker_exit  # noqa: F821
_out = os.environ["GLM_PROXY_PROFILE"]
_profiler = None


def post_worker_init(worker):  # noqa: F811
    global _profiler
    _post_worker_init(worker)
    if _out.endswith(".yappi"):
        import yappi

        yappi.set_clock_type("cpu")
        yappi.set_context_backend("greenlet")
        yappi.start(builtins=True)
    elif _out.endswith(".prof"):
        import cProfile

        _profiler = cProfile.Profile()
        _profiler.enable()
    else:
        from pyinstrument import Profiler

        _profiler = Profiler(interval=0.0005)
        _profiler.start()


def worker_exit(server, worker):  # noqa: F811
    if _out.endswith(".yappi"):
        import yappi

        yappi.stop()
        stats = yappi.get_func_stats()
        stats.save(_out + ".pstat", type="pstat")
        with open(_out, "w") as out:
            stats.sort("tsub").print_all(
                out=out,
                columns={0: ("name", 70), 1: ("ncall", 10), 2: ("tsub", 8), 3: ("ttot", 8)},
            )
    elif _out.endswith(".prof"):
        _profiler.disable()
        _profiler.dump_stats(_out)
    else:
        _profiler.stop()
        text = (
            _profiler.output_html()
            if _out.endswith(".html")
            else _profiler.output_text(unicode=False, show_all=False)
        )
        Path(_out).write_text(text)
    _worker_exit(server, worker)
