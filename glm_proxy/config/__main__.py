"""``python -m glm_proxy.config``: print the configuration table of docs/configuration.md.

``--write`` puts it in place between the page's ``CONFIG-TABLE`` markers, so a new
setting needs no hand-editing of the docs.
"""

import sys
from pathlib import Path

from glm_proxy.config.table import markdown_table

START, END = "<!-- CONFIG-TABLE -->\n", "\n<!-- /CONFIG-TABLE -->"

if "--write" in sys.argv[1:]:
    page = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    text = page.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    page.write_text(head + START + markdown_table() + END + tail)
else:
    print(markdown_table())
