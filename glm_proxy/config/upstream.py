"""Upstream settings: where chatglm.cn is, how a request to it looks, how long to wait.

Every upstream constant is a setting, so a user can follow an upstream change
without a new release. The 2025/2026 protocol profile is in ``protocol.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from glm_proxy.config.parsing import (
    FROM_PROFILE,
    one_of,
    parse_bool,
    parse_csv,
    parse_hex32,
    parse_proxy_url,
    setting,
)

DEFAULT_CHAT_ASSISTANT = "65940acff94777010aa6b796"
DEFAULT_DRAWING_ASSISTANT = "65a232c082ff90a2ad2f15e2"
DEFAULT_SIGN_SECRET = "8a1317a7468aa3ad86e997d08f3f31cb"
DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/143.0.0.0 Safari/537.36 Edg/143.0.0.0"
)


@dataclass(frozen=True)
class UpstreamSettings:
    """The upstream's address, paths, headers, timeouts and retries."""

    glm_base_url: str = setting(
        "GLM_BASE_URL", "https://chatglm.cn/chatglm", str, "Upstream API base URL."
    )
    glm_sign_secret: str = setting(
        "GLM_SIGN_SECRET", DEFAULT_SIGN_SECRET, parse_hex32, "Request signing secret (32 hex)."
    )
    glm_sign_check_digit: bool = setting(
        "GLM_SIGN_CHECK_DIGIT",
        True,
        parse_bool,
        "Apply the X-Timestamp check digit like the web app.",
    )
    glm_refresh_mode: str = setting(
        "GLM_REFRESH_MODE", "new", one_of("new", "legacy"), "Refresh endpoint flavour."
    )
    glm_assistant_id: str = setting(
        "GLM_ASSISTANT_ID", DEFAULT_CHAT_ASSISTANT, str, "Default chat assistant id."
    )
    glm_drawing_assistant_id: str = setting(
        "GLM_DRAWING_ASSISTANT_ID", DEFAULT_DRAWING_ASSISTANT, str, "Drawing assistant id."
    )
    glm_refresh_path: str = setting(
        "GLM_REFRESH_PATH", "/user-api/user/refresh", str, "Upstream path: token refresh."
    )
    glm_legacy_refresh_path: str = setting(
        "GLM_LEGACY_REFRESH_PATH",
        "/backend-api/v1/user/refresh",
        str,
        "Upstream path: legacy token refresh (`GLM_REFRESH_MODE=legacy`).",
    )
    glm_stream_path: str = setting(
        "GLM_STREAM_PATH", "/backend-api/assistant/stream", str, "Upstream path: answer stream."
    )
    glm_delete_path: str = setting(
        "GLM_DELETE_PATH",
        "/backend-api/assistant/conversation/delete",
        str,
        "Upstream path: conversation delete.",
    )
    glm_upload_path: str = setting(
        "GLM_UPLOAD_PATH",
        FROM_PROFILE,
        str,
        "Upstream path: chat file upload (2026 `/productivity-api/file/chat_upload`, "
        "2025 `/backend-api/assistant/file_upload`).",
    )
    glm_video_create_path: str = setting(
        "GLM_VIDEO_CREATE_PATH", "/video-api/v1/chat", str, "Upstream path: create a video task."
    )
    glm_video_status_path: str = setting(
        "GLM_VIDEO_STATUS_PATH",
        "/video-api/v1/chat/status/{chat_id}",
        str,
        "Upstream path: video task status.",
    )
    glm_video_delete_path: str = setting(
        "GLM_VIDEO_DELETE_PATH",
        "/video-api/v1/chat/{chat_id}",
        str,
        "Upstream path: delete a video task.",
    )
    glm_video_upload_path: str = setting(
        "GLM_VIDEO_UPLOAD_PATH",
        "/video-api/v1/static/upload",
        str,
        "Upstream path: first-frame upload.",
    )
    glm_video_composite_path: str = setting(
        "GLM_VIDEO_COMPOSITE_PATH",
        "/video-api/v1/static/composite_video",
        str,
        "Upstream path: add music to a video.",
    )
    glm_origin: str = setting("GLM_ORIGIN", "https://chatglm.cn", str, "Origin/Referer host.")
    glm_user_agent: str = setting("GLM_USER_AGENT", DEFAULT_USER_AGENT, str, "User-Agent.")
    glm_app_version: str = setting("GLM_APP_VERSION", "0.0.1", str, "X-App-Version.")
    glm_app_platform: str = setting("GLM_APP_PLATFORM", "pc", str, "X-App-Platform.")
    glm_app_fr: str = setting("GLM_APP_FR", "default", str, "X-App-Fr.")
    glm_exp_groups: str = setting(
        "GLM_EXP_GROUPS", FROM_PROFILE, str, "X-Exp-Groups (empty: not sent)."
    )
    glm_extra_headers: str = setting(
        "GLM_EXTRA_HEADERS", "", str, "Extra upstream headers, `Name: value` separated by `;`."
    )
    glm_networking: bool = setting(
        "GLM_NETWORKING", True, parse_bool, "Allow the upstream's web search (`is_networking`)."
    )
    glm_busy_codes: tuple[str, ...] = setting(
        "GLM_BUSY_CODES",
        ("10040", "10061", "10062"),
        parse_csv,
        "Envelope status codes meaning 'this account is busy' (10061 busy, 10062 peak-hour "
        "queue): retried on another account before the first byte.",
    )
    glm_access_token_ttl: int = setting(
        "GLM_ACCESS_TOKEN_TTL", 3600, int, "Seconds an access token is cached."
    )
    glm_connect_timeout: float = setting("GLM_CONNECT_TIMEOUT", 10.0, float, "Connect timeout.")
    glm_read_timeout: float = setting(
        "GLM_READ_TIMEOUT", 120.0, float, "Longest upstream silence inside a stream (seconds)."
    )
    glm_request_timeout: float = setting(
        "GLM_REQUEST_TIMEOUT", 15.0, float, "Timeout of refresh/delete/other JSON calls."
    )
    glm_retries: int = setting(
        "GLM_RETRIES", 2, int, "Extra attempts on transient upstream failures before any output."
    )
    glm_retry_backoff: float = setting(
        "GLM_RETRY_BACKOFF", 0.5, float, "First retry delay in seconds (doubles each time)."
    )
    glm_pool_maxsize: int = setting(
        "GLM_POOL_MAXSIZE", 512, int, "Kept-alive upstream connections."
    )
    upstream_transport: str = setting(
        "UPSTREAM_TRANSPORT",
        "lean",
        one_of("lean", "requests"),
        "How the upstream session sends and reads: `lean` (pooled sockets, responses parsed "
        "by httptools; proxies and anything unusual still go through requests' own adapter) "
        "or `requests` (requests' own adapter for everything: a fallback if the lean path "
        "ever misbehaves, at about a fifth more CPU per answer).",
    )
    upstream_proxy: str = setting(
        "UPSTREAM_PROXY",
        "",
        parse_proxy_url,
        "Outbound proxy for every upstream call (`http://`, `https://`, `socks5://`, "
        "`socks5h://`; credentials in the URL are kept secret). An account's `proxy=` option "
        "overrides it. URL fetches of user attachments never use it.",
    )

    @property
    def extra_headers(self) -> dict[str, str]:
        """``GLM_EXTRA_HEADERS`` as a mapping (items without a colon are ignored)."""
        headers: dict[str, str] = {}
        for item in self.glm_extra_headers.split(";"):
            name, sep, value = item.partition(":")
            if sep and name.strip():
                headers[name.strip()] = value.strip()
        return headers
