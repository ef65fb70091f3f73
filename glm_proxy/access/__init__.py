"""Who may call, and how much: credentials and API keys (``auth``), per-key rate and
concurrency limits and usage counters (``limits``).

Authentication answers *who* (a ``Caller``, or 401); admission answers *whether now*
(429 with ``Retry-After``). They are separate steps: a view authenticates, then admits.
"""
