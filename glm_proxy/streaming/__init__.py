"""The road from an answer's queue to the client's socket.

An answer job's producer (``glm_proxy.services.answer``) puts typed deltas in
a bounded queue and never sees the connection; the pump is the queue's one
reader and yields bytes to the server through a ``flask.Response``.

- ``queue``: the job's consumer side (``QueuedItems``, ``JobDone``, ``Failure``,
  ``QUIET``), bounded in items and bytes (backpressure);
- ``wire``: what a wire format is to the pump (``Wire``);
- ``pump``: ``respond()``, every answer view's end, and the pump itself
  (batching, keep-alives, cleanup);
- ``opening``: the status wait before the first byte;
- ``state``: one stream's state and the watch that times keep-alives and
  stalled clients;
- ``connection``: the only code that touches the client's socket (its send
  buffer, hanging up a stalled client);
- ``line_watch``: a client that hangs up while waiting for an account;
- ``choice_jobs``/``choices_wire``: ``n`` > 1 chat choices as one job, and
  their wire format.

Nothing is imported here, so that the producer side may import ``queue``
without loading the pump and Flask.
"""
