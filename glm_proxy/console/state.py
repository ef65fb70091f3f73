"""The console's parts for one app, and the page helpers every view shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from glm_proxy.console.data import ConsoleData
from glm_proxy.console.registry import ConsoleRegistry
from glm_proxy.console.session import Session, Sessions

# No inline script anywhere (there is no script at all), styles from the one stylesheet,
# charts are inline SVG with presentation attributes only.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class Console:
    data: ConsoleData
    registry: ConsoleRegistry
    sessions: Sessions


def console() -> Console:
    return current_app.extensions["glm_console"]


def session() -> Session:
    """The signed-in session of this request (the gate set it)."""
    return g.console_session


def page(template: str, status: int = 200, **context: Any) -> Response:
    """A console page: the shared layout's context, a notice shown once."""
    current = g.get("console_session")
    body = render_template(
        template,
        csrf=current.csrf if current else "",
        notice=context.pop("notice", None) or (current.notice if current else ""),
        active=request.endpoint,
        **context,
    )
    return Response(body, status=status, mimetype="text/html")


def done(endpoint: str, notice: str, **values: Any) -> BaseResponse:
    """After a change: a notice for the next page, and a redirect to it (303: GET it)."""
    console().sessions.notify(session(), notice)
    return redirect(url_for(endpoint, **values), code=303)
