"""``python -m glm_proxy <command>``: operator commands (``doctor``)."""

from __future__ import annotations

import sys

USAGE = "usage: python -m glm_proxy doctor   (token from GLM_REFRESH_TOKEN or a prompt)"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["doctor"]:
        if len(args) > 1:
            print(
                "doctor takes no arguments: secrets never go on the command line", file=sys.stderr
            )
            print(USAGE, file=sys.stderr)
            return 2
        from glm_proxy.upstream.doctor import main as doctor

        return doctor()
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
