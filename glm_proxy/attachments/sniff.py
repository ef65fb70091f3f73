"""What a file is, judged by its bytes rather than its name or the client's label.

Clients mislabel: a PDF arrives as an ``image_url`` part, a PNG behind
``/download?id=3`` has no extension, a data URL says ``application/octet-stream``.
The upstream treats documents and images differently (``file`` vs ``image``
items), so the decision comes from the content's magic bytes (``filetype``).
Text files have no magic number: they are recognised by decoding as UTF-8.
The filename sent upstream gets the extension matching the content, since the
upstream's document parser goes by extension.
"""

from __future__ import annotations

import mimetypes
import posixpath
from dataclasses import dataclass

import filetype

from glm_proxy.ids import uuid4_hex

IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp"}
TEXT_EXTENSIONS = {
    "txt",
    "md",
    "markdown",
    "csv",
    "tsv",
    "json",
    "xml",
    "html",
    "htm",
    "yaml",
    "yml",
    "py",
    "js",
    "ts",
    "java",
    "c",
    "cpp",
    "h",
    "go",
    "rs",
    "sql",
    "log",
    "ini",
    "toml",
}
GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream", "application/unknown"}


@dataclass(frozen=True, slots=True)
class Sniffed:
    kind: str  # "image" | "file"
    mime: str
    filename: str


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        # The head may cut a multi-byte character at its end.
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"


def _name_with_extension(name: str | None, extension: str) -> str:
    base = posixpath.basename((name or "").replace("\\", "/")).strip()
    base = "".join(ch for ch in base if ch >= " " and ch not in '"/')[:200]
    if not base:
        return f"{uuid4_hex()}.{extension}"
    stem, dot, current = base.rpartition(".")
    if dot and current.lower() == extension:
        return base
    if dot and extension == "jpg" and current.lower() in ("jpeg", "jpe", "jfif"):
        return base
    if dot and extension == "txt" and current.lower() in TEXT_EXTENSIONS:
        return base
    return f"{base}.{extension}"


def sniff(head: bytes, declared_type: str = "", filename: str | None = None) -> Sniffed:
    """Classify content from its first bytes; ``declared_type``/``filename`` only refine text."""
    kind = filetype.guess(head) if head else None
    if kind is not None:
        mime = kind.mime
        extension = "jpg" if kind.extension in ("jpg", "jpeg") else kind.extension
        category = "image" if mime in IMAGE_TYPES else "file"
        return Sniffed(category, mime, _name_with_extension(filename, extension))
    if _looks_like_text(head):
        declared = declared_type.lower()
        if declared.startswith("text/") or declared in ("application/json", "application/xml"):
            mime = declared
        else:
            guessed = mimetypes.guess_type(filename or "")[0] or ""
            mime = guessed if guessed.startswith("text/") else "text/plain"
        return Sniffed("file", mime, _name_with_extension(filename, "txt"))
    mime = declared_type.lower() if declared_type.lower() not in GENERIC_TYPES else ""
    mime = mime or mimetypes.guess_type(filename or "")[0] or "application/octet-stream"
    if mime.startswith("image/"):
        mime = "application/octet-stream"  # claims to be an image, but the bytes disagree
    extension = (mimetypes.guess_extension(mime) or ".bin").lstrip(".")
    name = filename if filename and "." in filename else None
    return Sniffed("file", mime, name or _name_with_extension(filename, extension))
