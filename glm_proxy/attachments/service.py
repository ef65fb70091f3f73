"""Attachments in chat: fetch or decode, classify, upload once per account, reference.

The chat service calls ``AttachmentService.fetch_all(refs)`` once per answer,
before an account is leased, and ``upload_all(account, blobs)`` inside each
account attempt; the result is the upstream ``file`` and ``image`` item lists
(protocol notes §6.1, §7).

Upload cache: the upstream keeps uploaded files per account, so the result of
uploading a file is remembered in the store under
``upl:<account fingerprint>:<sha256 of the content>`` for ``UPLOAD_CACHE_TTL``
seconds. A client that resends its whole history (a 50 MB PDF on every turn)
pays one upload per account; the content still has to be fetched or decoded
each turn to know its hash. A store lock makes concurrent requests with the
same file wait for one upload instead of racing.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import orjson

from glm_proxy.accounts import Account
from glm_proxy.attachments.blob import Blob, decode_data_url, describe
from glm_proxy.attachments.fetch import FetchLimits, fetch
from glm_proxy.attachments.guard import AllowList, FetchGuard, Resolver, system_resolver
from glm_proxy.attachments.sniff import sniff
from glm_proxy.errors import GLMProxyError, InvalidRequest, PayloadTooLarge, UpstreamError
from glm_proxy.inputs.prompt import AttachmentRef
from glm_proxy.store import keys
from glm_proxy.upstream.media import upload_file

log = logging.getLogger(__name__)

UPLOAD_LOCK_TIMEOUT = 600.0


class AttachmentService:
    """Turns attachment references into upstream upload records (see module docstring)."""

    def __init__(self, settings, store, upstream, *, resolver: Resolver = system_resolver) -> None:
        self.settings = settings
        self.store = store
        self.upstream = upstream
        self.guard = FetchGuard(AllowList.parse(settings.fetch_allow_hosts), resolver)
        self.limits = FetchLimits(
            settings.max_file_size,
            settings.fetch_connect_timeout,
            settings.fetch_read_timeout,
            settings.fetch_total_timeout,
        )
        self.uploads = 0  # upstream uploads done by this process (cache misses)

    # -- getting the bytes -------------------------------------------------------

    def materialize(
        self, url: str, filename: str | None = None, max_size: int | None = None
    ) -> Blob:
        """The content of a client-supplied http(s) or ``data:`` URL (SSRF-guarded).

        ``max_size`` lowers the size limit (what is left of a request's budget).

        Raises:
            InvalidRequest (400): unsupported scheme, bad data URL, fetch failure.
            PayloadTooLarge (413): larger than ``MAX_FILE_SIZE`` (or ``max_size``).
        """
        limits = self.limits
        if max_size is not None and max_size < limits.max_size:
            limits = dataclasses.replace(limits, max_size=max_size)
        scheme = url[:8].lower()
        if scheme.startswith("data:"):
            return decode_data_url(url, limit=limits.max_size, filename=filename)
        if scheme.startswith(("http://", "https://")):
            return fetch(url, limits, self.guard, filename=filename)
        raise InvalidRequest(
            f"Unsupported attachment URL {describe(url)}: use an http(s) URL or a data: URL."
        )

    def fetch_generated(self, url: str) -> Blob:
        """A file the upstream produced (a generated image): not user input, so no SSRF
        guard, but the same size and time limits. A failure is the upstream's (502)."""
        try:
            return fetch(url, self.limits, None)
        except GLMProxyError as exc:
            raise UpstreamError(
                f"Could not download the file the upstream generated: {exc.message}"
            ) from None

    # -- uploading ---------------------------------------------------------------

    def upload(self, account: Account, blob: Blob) -> tuple[str, dict[str, Any]]:
        """("file" | "image", upstream record) for ``blob`` on ``account``, cached."""
        key = keys.upload(account.fingerprint, blob.sha256)
        cached = self._cached(key)
        if cached is not None:
            return cached
        with self.store.lock(
            keys.upload_lock(account.fingerprint, blob.sha256),
            timeout=UPLOAD_LOCK_TIMEOUT,
            blocking_timeout=UPLOAD_LOCK_TIMEOUT,
        ):
            cached = self._cached(key)
            if cached is not None:
                return cached
            sniffed = sniff(blob.head, blob.declared_type, blob.filename)
            record = upload_file(
                self.upstream, account, blob.rewind(), blob.size, sniffed.filename, sniffed.mime
            )
            self.uploads += 1
            has_size = bool(record.get("width")) and bool(record.get("height"))
            kind = "image" if sniffed.kind == "image" or has_size else "file"
            if kind == "image":
                record = {**record, "image_url": record.get("image_url") or record.get("file_url")}
            value = orjson.dumps({"kind": kind, "record": record}).decode()
            self.store.set(key, value, ttl=self.settings.upload_cache_ttl)
            log.info(
                "uploaded %s (%s, %d bytes) for %s",
                sniffed.filename,
                sniffed.mime,
                blob.size,
                account,
            )
            return kind, record

    def _cached(self, key: str) -> tuple[str, dict[str, Any]] | None:
        raw = self.store.get(key)
        if not raw:
            return None
        try:
            value = orjson.loads(raw)
            return str(value["kind"]), dict(value["record"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None

    def fetch_all(self, refs: list[AttachmentRef]) -> list[Blob]:
        """The distinct attachments' contents, fetched once per answer, before any lease.

        Fetching happens before an account is leased (a slow download must not
        hold an account) and only once however many accounts the answer is
        tried on. The same URL, or the same content under two URLs, counts
        once. A request may carry at most ``MAX_ATTACHMENTS`` distinct URLs
        (checked before anything is fetched) and ``MAX_ATTACHMENT_BYTES`` in
        all (each download is capped by what is left, so the request stops
        at the limit instead of filling the disk first). A failure names the
        message that carried the URL. The caller closes the blobs.
        """
        self._check_count(refs)
        budget = self.settings.max_attachment_bytes
        blobs: list[Blob] = []
        seen_urls: set[str] = set()
        seen_content: set[str] = set()
        try:
            for ref in refs:
                if ref.url in seen_urls:
                    continue
                seen_urls.add(ref.url)
                left = budget - sum(blob.size for blob in blobs)
                try:
                    blob = self.materialize(ref.url, ref.filename, max_size=left)
                except PayloadTooLarge as exc:
                    if left < self.limits.max_size:
                        raise self._over_budget(ref, budget) from None
                    exc.param = exc.param or f"messages[{ref.message_index}].content"
                    raise
                except GLMProxyError as exc:
                    if exc.param is None and exc.status < 500:
                        exc.param = f"messages[{ref.message_index}].content"
                    raise
                if blob.sha256 in seen_content:
                    blob.close()
                    continue
                seen_content.add(blob.sha256)
                blobs.append(blob)
        except BaseException:
            for blob in blobs:
                blob.close()
            raise
        return blobs

    def _check_count(self, refs: list[AttachmentRef]) -> None:
        limit = self.settings.max_attachments
        distinct = len({ref.url for ref in refs})
        if distinct > limit:
            raise InvalidRequest(
                f"This request attaches {distinct} files or images; the limit is {limit} "
                "per request (MAX_ATTACHMENTS).",
                param="messages",
                code="too_many_attachments",
            )

    @staticmethod
    def _over_budget(ref: AttachmentRef, budget: int) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"The attachments of this request are larger than {budget} bytes in all "
            f"({budget / 1024**2:.0f} MiB; MAX_ATTACHMENT_BYTES); the limit was reached "
            f"at {describe(ref.url)}.",
            param=f"messages[{ref.message_index}].content",
            code="attachments_too_large",
        )

    def upload_all(
        self, account: Account, blobs: list[Blob]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(documents, images) upload records for ``blobs`` on ``account``, in order."""
        files: list[dict[str, Any]] = []
        images: list[dict[str, Any]] = []
        for blob in blobs:
            kind, record = self.upload(account, blob)
            (images if kind == "image" else files).append(record)
        return files, images
