"""``/console``: sign-in, the gate, and the read-only pages (overview, usage, activity).

Every page is rendered on the server and every action is a plain form post
with a CSRF token, so the console works without JavaScript. A request without
a live session is sent to the sign-in page, a post without the session's CSRF
token is refused (403), and every answer carries a Content-Security-Policy
without inline script and ``frame-ancestors 'none'``.
"""

from __future__ import annotations

from flask import Blueprint, Response, g, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from glm_proxy.access.limits import PASSTHROUGH
from glm_proxy.console import usage as history
from glm_proxy.console.charts import bar_chart
from glm_proxy.console.pool_view import pool_accounts, queue_length, states, total
from glm_proxy.console.state import SECURITY_HEADERS, console, page, session
from glm_proxy.services import services

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
)

OPEN = {"console.signin", "console.static"}


@bp.before_request
def _gate() -> BaseResponse | None:
    if request.endpoint in OPEN:
        return None
    current = console().sessions.current(request)
    if current is None:
        return redirect(url_for("console.signin"), code=303)
    g.console_session = current
    if request.method == "POST" and not console().sessions.csrf_ok(
        current, request.form.get("csrf")
    ):
        return page("error.html", 403, message="This form has expired; open the page again.")
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


# -- sign-in ------------------------------------------------------------------------------


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> BaseResponse:
    if request.method == "GET":
        return page("signin.html")
    sessions = console().sessions
    address = request.remote_addr or "-"
    if sessions.too_many_failures(address):
        return page("signin.html", 429, notice="Too many failed sign-ins; try again later.")
    if not sessions.key_matches(request.form.get("admin_key", "")):
        sessions.count_failure(address)
        return page("signin.html", 401, notice="That is not the admin key.")
    new = sessions.start()
    response = redirect(url_for("console.overview"), code=303)
    sessions.set_cookie(response, request, new)
    return response


@bp.post("/signout")
def signout() -> BaseResponse:
    sessions = console().sessions
    sessions.end(session())
    response = redirect(url_for("console.signin"), code=303)
    sessions.clear_cookie(response, request)
    return response


# -- overview -----------------------------------------------------------------------------


def key_names() -> list[str]:
    """Every key usage is counted under: configured, console-made, pass-through."""
    svc = services()
    names = [*svc.auth.keyring.names, *(k.name for k in console().data.list_keys())]
    return [*dict.fromkeys(names), PASSTHROUGH]


@bp.get("/")
def overview() -> Response:
    svc = services()
    accounts = pool_accounts(svc.pool)
    rows = console().data.hourly_totals(history.now_hour() - 24)
    hour, day = history.last_hour_and_day(rows)
    return page(
        "overview.html",
        accounts=len(accounts),
        states=states(accounts),
        credits=total(accounts, "credits"),
        in_flight=sum(a.get("in_flight") or 0 for a in accounts),
        queue=queue_length(svc.pool),
        windows={"hour": hour, "day": day},
        chart=bar_chart(history.hourly_bars(rows), "Requests per hour, last 24 hours"),
        keys=len(key_names()) - 1,
        backend=console().data.backend,
    )


# -- usage --------------------------------------------------------------------------------


def _period() -> str:
    return "day" if request.args.get("period") == "day" else "hour"


@bp.get("/usage")
def usage() -> Response:
    period = _period()
    hours = 24 * 30 if period == "day" else 48
    rows = console().data.usage(history.now_hour() - hours + 1)
    if period == "day":
        chart = bar_chart(history.daily_bars(rows), "Requests per day, last 30 days")
    else:
        chart = bar_chart(history.hourly_bars(rows, 48), "Requests per hour, last 48 hours")
    return page(
        "usage.html",
        period=period,
        chart=chart,
        by_key=history.table(rows, "key", period),
        by_model=history.table(rows, "model", period),
    )


@bp.get("/usage.csv")
def usage_csv() -> Response:
    period = _period()
    hours = 24 * 30 if period == "day" else 48
    rows = console().data.usage(history.now_hour() - hours + 1)
    return Response(
        history.to_csv(rows, period),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="usage-by-{period}.csv"'},
    )


# -- activity -----------------------------------------------------------------------------


@bp.get("/activity")
def activity() -> Response:
    entries = console().data.activity(200)
    return page("activity.html", entries=entries, stamp=history.stamp)
