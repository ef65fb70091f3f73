"""A client that hangs up while its request waits in line for an account leaves the line.

Nothing is written to a request that waits for an account (a stream's status
is decided only once it has one), so its hang-up would go unnoticed until the
store granted it an account: an answer produced for nobody, and, with the line
served round robin across keys, that key's turn spent on it. So while a job
waits, one greenlet watches its connection: the connection turning readable
with nothing to read is the client's hang-up (EOF), and the job is aborted
with ``ClientGone``. The producer leaves the line at once (``AccountPool.lease``
removes its ticket) and the next request in line gets the account.

Only requests that actually wait get a watch (most are leased before the view
returns), and it ends as soon as the job has an account: from then on a failed
write tells the pump the client is gone. A readable connection with data on
it is a pipelined next request, not a hang-up: the watch just stops.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Protocol

import gevent
from gevent.socket import wait_read

from glm_proxy.services.aborts import ClientGone

if TYPE_CHECKING:
    from glm_proxy.errors import GLMProxyError


class InLine(Protocol):
    """What the watch needs of a job (``AnswerJob``, or ``ChoiceJobs`` for n > 1)."""

    def wait_leased(self, timeout: float | None = None) -> bool: ...

    def abort(self, error: GLMProxyError) -> None: ...


POLL = 0.5  # seconds between looks at whether the job got its account meanwhile


def watch_line(job: InLine, client: socket.socket | None) -> None:
    """Abort ``job`` if ``client`` hangs up before the job leases an account."""
    if client is not None and not job.wait_leased(0):
        gevent.spawn(_watch, job, client)


def _watch(job: InLine, client: socket.socket) -> None:
    try:
        fileno = client.fileno()
    except OSError:
        return
    while not job.wait_leased(0):
        try:
            wait_read(fileno, timeout=POLL)
        except TimeoutError:
            continue
        except Exception:  # noqa: BLE001 - the descriptor went away: the request ended
            return
        if job.wait_leased(0):
            return
        try:
            gone = client.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            continue  # a spurious wake-up
        except OSError:
            gone = True  # reset by the peer
        if gone:
            job.abort(ClientGone("the client hung up while waiting for an account"))
        return
