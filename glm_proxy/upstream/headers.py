"""The web app's request headers, built by a pure function.

The upstream only checks a few of these (``App-Name``, the signature); the rest
make our requests look like the browser's. Every value that might need to
follow an upstream change comes from a setting; ids and the signature are
passed in, so the result is reproducible in tests.
"""

from __future__ import annotations

from glm_proxy.config import Settings
from glm_proxy.upstream.identity import client_hints

JSON_CT = "application/json;charset=UTF-8"


def browser_headers(
    settings: Settings,
    *,
    token: str | None,
    referer: str | None,
    content_type: str | None,
    accept: str,
    request_ids: tuple[str, str],
    signature: dict[str, str] | None,
    cookie: str = "",
) -> dict[str, str]:
    """Headers for one upstream request.

    :param request_ids: ``(X-Device-Id, X-Request-Id)`` values (32 hex each).
    :param signature: the ``X-Timestamp``/``X-Nonce``/``X-Sign`` triple, or None.
    :param cookie: the account's browser cookie header ("" = none, like 2025 proxies).
    """
    s = settings
    device_id, request_id = request_ids
    headers = {
        "Accept": accept,
        "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8",
        "App-Name": "chatglm",
        "Cache-Control": "no-cache",
        "Pragma": "no-cache",
        "Origin": s.glm_origin,
        "Referer": referer or f"{s.glm_origin}/main/alltoolsdetail",
        **client_hints(s.glm_user_agent, s.glm_sec_ch_ua),
        "Sec-Fetch-Dest": "empty",
        "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Site": "same-origin",
        "User-Agent": s.glm_user_agent,
        "X-App-Platform": s.glm_app_platform,
        "X-App-Version": s.glm_app_version,
        "X-App-Fr": s.glm_app_fr,
        "X-Device-Brand": "",
        "X-Device-Model": "",
        "X-Lang": "zh",
        "X-Device-Id": device_id,
        "X-Request-Id": request_id,
    }
    if s.glm_exp_groups:
        headers["X-Exp-Groups"] = s.glm_exp_groups
    if content_type:
        headers["Content-Type"] = content_type
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if cookie:
        headers["Cookie"] = cookie
    if signature:
        headers.update(signature)
    headers.update(s.extra_headers)
    return headers
