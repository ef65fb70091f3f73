"""The sources an answer cites, numbered in order of first citation, and the
markdown escaping of their links (used by ``_render``)."""

from __future__ import annotations

from glm_proxy.protocol.events import Citation
from glm_proxy.protocol.translate._segments import Source

SOURCES_HEADING = "\n\n**Sources**\n"


def md_url(url: str) -> str:
    """Make a URL safe inside a markdown link destination ``(...)``."""
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def md_text(text: str) -> str:
    """Make text safe inside a markdown link label ``[...]``."""
    return " ".join(text.replace("[", "\\[").replace("]", "\\]").split())


class CitationBook:
    """Sources the answer has cited, numbered in order of first citation (from 1)."""

    def __init__(self) -> None:
        self.cited: dict[str, Citation] = {}  # url -> citation
        self.consulted: dict[str, Source] = {}  # url -> every source the upstream found
        self.new: list[Citation] = []  # cited since the last take_new(); read per event

    def consult(self, source: Source | None) -> None:
        if source is not None and source.url not in self.consulted:
            self.consulted[source.url] = source

    def cite(self, source: Source) -> Citation:
        citation = self.cited.get(source.url)
        if citation is None:
            citation = Citation(len(self.cited) + 1, source.title, source.url)
            self.cited[source.url] = citation
            self.new.append(citation)
        return citation

    def take_new(self) -> list[Citation]:
        """Citations made since the last call (each is announced once)."""
        new, self.new = self.new, []
        return new

    def sources_list(self, include_uncited: bool = False) -> str:
        """``"\\n\\n**Sources**\\n1. [title](url)\\n2. ..."``, or "" when there is none.

        Cited sources first, numbered as in the text; with ``include_uncited`` the
        other pages the upstream consulted follow, numbered on.
        """
        entries = [(c.title, c.url) for c in self.cited.values()]
        if include_uncited:
            entries += [
                (s.title, s.url) for s in self.consulted.values() if s.url not in self.cited
            ]
        if not entries:
            return ""
        lines = (
            f"{i}. [{md_text(title)}]({md_url(url)})" for i, (title, url) in enumerate(entries, 1)
        )
        return SOURCES_HEADING + "\n".join(lines)
