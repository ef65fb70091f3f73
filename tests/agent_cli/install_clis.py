"""Install the pinned agent CLIs (``tests/support/agent_clis.py``) for the CLI tests, once.

``.ci/run`` calls this before the tests; it does nothing when the cache folder already holds
the pinned versions, so a kept cache costs no download. Without node/npm it says so and exits 0:
the CLI tests then skip with that reason.
"""

from __future__ import annotations

import sys

from tests.support.agent_clis import CLI_DIR, PINS, install, node_tools_missing, stale_pins


def main() -> int:
    missing = node_tools_missing()
    if missing:
        print(f"agent CLIs not installed: {missing}", file=sys.stderr)
        return 0
    wanted = stale_pins()
    if not wanted:
        print(f"agent CLIs cached in {CLI_DIR}: {PINS}")
        return 0
    print(f"installing {wanted} into {CLI_DIR}", flush=True)
    install()
    return 0


if __name__ == "__main__":
    sys.exit(main())
