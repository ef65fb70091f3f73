"""What an operator sees: the request log and its secret scrubber (``logs``),
Prometheus counters (``metrics``) and the per-request record the views fill in
for both (``record``)."""
