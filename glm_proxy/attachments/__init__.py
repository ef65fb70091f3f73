"""Files and images that clients attach: fetch (SSRF-guarded), sniff, spool, upload once.

Public surface: :class:`AttachmentService` (``fetch_all`` then ``upload_all`` for
chat, ``materialize`` and ``fetch_generated`` for the image and video services),
:class:`Blob`, and the guard/fetch building blocks for tests.
"""

from glm_proxy.attachments.blob import Blob, decode_data_url, spool
from glm_proxy.attachments.fetch import FetchError, FetchLimits, fetch
from glm_proxy.attachments.guard import AllowList, BlockedAddress, FetchGuard, blocked_reason
from glm_proxy.attachments.service import AttachmentService
from glm_proxy.attachments.sniff import Sniffed, sniff

__all__ = [
    "AllowList",
    "AttachmentService",
    "Blob",
    "BlockedAddress",
    "FetchError",
    "FetchGuard",
    "FetchLimits",
    "Sniffed",
    "blocked_reason",
    "decode_data_url",
    "fetch",
    "sniff",
    "spool",
]


def init_app(app) -> None:
    """Hang the attachment service on the app (needs store and upstream first)."""
    app.extensions["glm_attachments"] = AttachmentService(
        app.extensions["glm_settings"], app.extensions["glm_store"], app.extensions["glm_upstream"]
    )
