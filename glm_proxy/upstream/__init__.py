"""The upstream (chatglm.cn) client: the only package that does upstream I/O."""

from glm_proxy.upstream.client import UpstreamClient, init_app
from glm_proxy.upstream.tokens import TokenCache, TokenGrant

__all__ = ["TokenCache", "TokenGrant", "UpstreamClient", "init_app"]
