"""The console's pure parts: charts, usage sums, CSV, the SQLite data, the pool adapter."""

from __future__ import annotations

import re
import time

import pytest

from glm_proxy.console import usage as history
from glm_proxy.console.charts import Bar, _nice_max, bar_chart
from glm_proxy.console.data import ACTIVITY_SIZE, Activity, ConsoleAccount, ConsoleKey, UsageRow
from glm_proxy.console.pool_view import states, total
from glm_proxy.console.sqlite_data import SqliteData


def test_chart_escapes_labels_and_uses_no_inline_style() -> None:
    svg = bar_chart([Bar("<script>x</script>", 3, 1), Bar("b", 0)], 'a "title" & <more>')
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "style=" not in svg
    assert "3 requests, 1 errors" in svg
    assert [_nice_max(v) for v in (0, 1, 3, 7, 11, 999, 1001)] == [1, 1, 5, 10, 20, 1000, 2000]


def test_last_hour_counts_the_previous_bucket_in_proportion() -> None:
    now = 1000 * 3600 + 900  # a quarter into hour 1000
    rows = [
        UsageRow(1000, "k", "m", requests=2),
        UsageRow(999, "k", "m", requests=8, total_tokens=80),
        UsageRow(976, "k", "m", requests=4),  # 24 hours before the current one
        UsageRow(975, "k", "m", requests=100),  # too old for either window
    ]
    hour, day = history.last_hour_and_day(rows, now)
    assert (hour.requests, hour.total_tokens) == (2 + 6, 60)
    assert day.requests == 2 + 8 + 3


def test_csv_cells_are_never_formulas() -> None:
    rows = [UsageRow(1000, "=cmd", "+model", requests=1), UsageRow(1000, "k", "-", requests=2)]
    text = history.to_csv(rows, "hour")
    assert "'=cmd" in text and "'+model" in text and ",-," in text
    assert text.splitlines()[0].startswith("hour,key,model,requests")


def test_sqlite_data_round_trip(tmp_path) -> None:
    data = SqliteData(str(tmp_path / "d"))
    assert data.version() == "0" and data.list_keys() == []
    key = ConsoleKey("team", ConsoleKey.digest_of("sk-glm-x"), 1.0, rpm=5, models=["glm-4"])
    data.put_key(key)
    data.put_account(ConsoleAccount("abc", "rt-secret", "n", 2, "a=b", 1.0))
    first = data.version()
    assert data.list_keys() == [key] and data.list_keys()[0].api_key().rpm == 5
    assert data.list_accounts()[0].refresh_token == "rt-secret"
    assert (tmp_path / "d" / "console.sqlite3").stat().st_mode & 0o077 == 0  # owner only
    assert data.delete_key("team") and not data.delete_key("team")
    assert data.version() != first
    now = time.time()
    for _ in range(ACTIVITY_SIZE + 150):
        data.record(Activity(now, "team", "glm-4", 200, 0.1, "abc", "/v1"), {"requests": 1})
    assert len(data.activity(10_000)) <= ACTIVITY_SIZE + 100
    (row,) = data.usage(int(now // 3600))
    assert row.requests == ACTIVITY_SIZE + 150
    assert data.hourly_totals(int(now // 3600))[0].requests == row.requests
    data.close()
    again = SqliteData(str(tmp_path / "d"))  # what a restart reads
    assert again.list_accounts()[0].fingerprint == "abc"
    assert again.usage(int(now // 3600))[0].requests == ACTIVITY_SIZE + 150


def test_the_pool_adapter_renders_fields_when_the_pool_has_them(monkeypatch, tmp_path) -> None:
    accounts = [
        {"id": "a" * 12, "state": "cooling", "reason": "out_of_credits", "credits": 0},
        {"id": "b" * 12, "state": "active", "credits": 42, "budget_used": 7, "budget": 100},
        {"id": "c" * 12, "state": "active"},
    ]
    assert states(accounts)[0] == ("active", "", 2)
    assert ("cooling", "out_of_credits", 1) in states(accounts)
    assert total(accounts, "credits") == 42 and total(accounts[2:], "credits") is None

    from glm_proxy import create_app
    from glm_proxy.console import manage, views

    app = create_app(
        {"ADMIN_KEY": "adm", "DATA_DIR": str(tmp_path), "GLM_BASE_URL": "http://127.0.0.1:9"}
    )
    for module in (views, manage):
        monkeypatch.setattr(module, "pool_accounts", lambda pool: [dict(a) for a in accounts])
    web = app.test_client()
    web.post("/console/signin", data={"admin_key": "adm"})
    page = web.get("/console/accounts").get_data(as_text=True)
    assert "out_of_credits" in page and ">42<" in page and "7 / 100" in page
    overview = web.get("/console/").get_data(as_text=True)
    assert "out_of_credits" in overview and re.search(r">42</span><span>credits", overview)


@pytest.mark.parametrize("credential", ["sk-glm-anything", "sk-glm-"])
def test_console_shaped_credentials_are_claimed(credential, tmp_path) -> None:
    from glm_proxy.console.registry import ConsoleRegistry

    class Pool:
        entries: dict = {}

    registry = ConsoleRegistry(SqliteData(str(tmp_path)), Pool())
    assert registry.claims(credential) and not registry.claims("eyJhbGciOi.x.y")
    assert registry.match(credential) is None


def test_an_unusable_data_dir_stops_the_start(tmp_path) -> None:
    from glm_proxy import create_app
    from glm_proxy.config import ConfigError

    taken = tmp_path / "a-file"
    taken.write_text("not a directory")
    with pytest.raises(ConfigError) as info:
        create_app({"ADMIN_KEY": "adm", "DATA_DIR": str(taken)})
    assert "DATA_DIR" in str(info.value)
    create_app({"ADMIN_KEY": "", "DATA_DIR": str(taken)})  # no console, no data
