"""The ``POST /token/check`` request: one refresh token to test."""

from __future__ import annotations

from marshmallow import fields, validate

from glm_proxy.api.schemas.base import Lenient


class TokenCheckSchema(Lenient):
    token = fields.Str(required=True, validate=validate.Length(min=1))
