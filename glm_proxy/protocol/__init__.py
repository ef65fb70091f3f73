"""Everything sans-IO that speaks a wire format: pure code, ``feed()``/``finish()``.

- ``sse``: server-sent events, bytes <-> events (both directions);
- ``events``: the typed deltas an answer is made of;
- ``translate``: upstream SSE snapshots -> deltas (one transition table);
- ``parsers``: filters on the deltas (tool-call blocks, stop strings, length,
  structured JSON);
- ``formats``: deltas -> one ``Wire`` per client format (Chat Completions,
  Anthropic Messages, Responses);
- ``usage``: the token estimate for ``usage`` objects.

Nothing here touches a socket, Flask or the store, so all of it is tested
without a network, byte by byte and with junk.
"""
