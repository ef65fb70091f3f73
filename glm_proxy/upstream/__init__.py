"""The upstream (chatglm.cn) client: the only package that does upstream I/O."""

from glm_proxy.upstream.client import TokenGrant, UpstreamClient, init_app

__all__ = ["TokenGrant", "UpstreamClient", "init_app"]
