"""The labelled histories: what people asked their agents in a repository, what the agents did, and what a
careful engineer would work on next.

Each scenario is a function that writes one history with a `Builder`; its docstring is the history's summary.
The label is the file, package or test a person reading the sessions would name for the next task; `also` are
other spellings of the same target (the test file and the module it tests, a test id, a package path).
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.decide import outputs as o
from benchmarks.decide.builder import Builder, Scenario
from benchmarks.decide.outputs import GoPkg, JestSuite, PyFail, PyFile, Pytest
from benchmarks.decide.trees import CLIENT, DOTFILES, GO, PYTHON, RUST, SERVICES, WEB, merge
from benchmarks.decide.writers import Session

ALL = merge(PYTHON, WEB, GO, RUST, SERVICES)
SCENARIOS: list[Scenario] = []
GO_MODULE = "github.com/acme/edge"


def scenario(
    name: str, fast: bool = False, since_days: int | None = None
) -> Callable[[Callable[[Builder], None]], Callable[[Builder], None]]:
    def register(write: Callable[[Builder], None]) -> Callable[[Builder], None]:
        summary = " ".join((write.__doc__ or "").split())
        SCENARIOS.append(Scenario(name, summary, fast, write, since_days))
        return write

    return register


def line_of(path: str, snippet: str) -> int:
    """The line of `path` (in the trees) that holds `snippet`, as tools report it."""
    for i, line in enumerate(ALL[path].splitlines(), 1):
        if snippet in line:
            return i
    raise KeyError(f"{snippet!r} not in {path}")


# ------------------------------------------------------------------------------------------- python


def _dates_week(got: str) -> PyFail:
    return PyFail(
        "tests/test_dates.py",
        "test_parse_iso_week",
        ("def test_parse_iso_week():", '    assert parse_iso_week("2026-W05-3") == date(2026, 1, 28)'),
        (
            f"assert datetime.date({got}) == datetime.date(2026, 1, 28)",
            f" +  where datetime.date({got}) = parse_iso_week('2026-W05-3')",
        ),
        line_of("tests/test_dates.py", '"2026-W05-3"'),
    )


DATES_MONDAY = PyFail(
    "tests/test_dates.py",
    "test_parse_iso_week_monday",
    ("def test_parse_iso_week_monday():", '    assert parse_iso_week("2026-W01-1") == date(2025, 12, 29)'),
    (
        "assert datetime.date(2025, 12, 30) == datetime.date(2025, 12, 29)",
        " +  where datetime.date(2025, 12, 30) = parse_iso_week('2026-W01-1')",
    ),
    line_of("tests/test_dates.py", '"2026-W01-1"'),
)
DATES_RETURN = "    return monday + timedelta(weeks=int(week[1:]), days=int(day) - 1)"
DATES_WRONG = "    return monday + timedelta(weeks=int(week[1:]) - 1, days=int(day))"
DATES_FIXED = "    return monday + timedelta(weeks=int(week[1:]) - 1, days=int(day) - 1)"


@scenario("dates_abandoned", fast=True)
def dates_abandoned(h: Builder) -> None:
    """Asked to fix the failing test in the dates parser, the agent ran `python3 -m pytest tests/test_dates.py
    -q` three times, failed every time and gave up."""
    h.tree(PYTHON)
    s = h.claude(4.3)
    s.ask("where do we parse ISO week dates?")
    rg = (
        "src/parser/__init__.py:1:from parser.dates import parse_iso_week\n"
        'src/parser/dates.py:6:def parse_iso_week(text: str) -> date:\n    """\'2026-W05-3\' -> the Wednesday '
        'of ISO week 5 of 2026."""\n'
        "tests/test_dates.py:3:from parser.dates import parse_iso_week"
    )
    s.command('rg -n "iso_week" src tests', rg, desc="Search for the ISO week parser")
    s.say("In `src/parser/dates.py` (`parse_iso_week`), tested in `tests/test_dates.py`.")
    s = h.claude(1.2)
    s.ask("fix the failing test in the dates parser")
    s.read("src/parser/dates.py", note="Let me look at the parser and its tests.")
    s.read("tests/test_dates.py")
    first = str(Pytest([PyFile("tests/test_dates.py", ".F.")], [_dates_week("2026, 2, 4")], 0.06))
    s.command("python3 -m pytest tests/test_dates.py -q", first, 1, desc="Run the dates tests")
    s.edit("src/parser/dates.py", DATES_RETURN, DATES_WRONG, note="The week offset counts from week 0. Fixing it.")
    second = Pytest([PyFile("tests/test_dates.py", "FF.")], [DATES_MONDAY, _dates_week("2026, 1, 29")], 0.05)
    s.command("python3 -m pytest tests/test_dates.py -q", str(second), 1, desc="Run the dates tests again")
    s.edit("src/parser/dates.py", DATES_WRONG, DATES_RETURN, note="That broke the Monday case; reverting.")
    s.command("python3 -m pytest tests/test_dates.py -q", first, 1, desc="Run the dates tests again")
    s.say(
        "I couldn't get `test_parse_iso_week` to pass. `parse_iso_week` adds the full week number to the Monday "
        "of week 1, so dates land a week late; subtracting a week broke `test_parse_iso_week_monday` because the "
        "day offset moved with it, so I reverted that. The parser is as it was. I'm stopping here: please confirm "
        "the expected dates in the test first."
    )
    h.target(
        "tests/test_dates.py",
        "test_dates.py",
        "test_dates",
        "test_parse_iso_week",
        "src/parser/dates.py",
        "parser/dates.py",
        "parser.dates",
        why="the person's request, failed three times and left failing; the fix is in src/parser/dates.py",
    )


def _invoice(got: str) -> PyFail:
    return PyFail(
        "tests/test_invoice.py",
        "test_total_rounds_half_up",
        (
            "def test_total_rounds_half_up():",
            '    lines = [Line("widget", 1, Decimal("1.50"))]',
            '    assert total(lines, "DE") == Decimal("1.79")',
        ),
        (
            f"AssertionError: assert {got} == Decimal('1.79')",
            f" +  where {got} = total([Line(description='widget', quantity=1, unit_price=Decimal('1.50'))], 'DE')",
        ),
        line_of("tests/test_invoice.py", 'Decimal("1.79")'),
    )


NUMBERS_SCIENTIFIC = PyFail(
    "tests/test_numbers.py",
    "test_scientific",
    ("def test_scientific():", '    assert parse_amount("1e3") == Decimal("1000")'),
    ("ValueError: not an amount: '1e3'",),
    line_of("tests/test_numbers.py", '"1e3"'),
    "ValueError",
    (
        "text = '1e3'",
        "",
        "    def parse_amount(text: str) -> Decimal:",
        "        cleaned = _strip(text)",
        '        if not cleaned.replace(".", "", 1).isdigit():',
        '>           raise ValueError(f"not an amount: {text!r}")',
        "E           ValueError: not an amount: '1e3'",
    ),
    f"src/parser/numbers.py:{line_of('src/parser/numbers.py', 'raise ValueError')}",
)


@scenario("two_failing_files", fast=True)
def two_failing_files(h: Builder) -> None:
    """Two failing test files: tests/test_numbers.py failed once four days ago and waits on a decision;
    tests/test_invoice.py failed three times yesterday and was left failing."""
    h.tree(PYTHON)
    s = h.codex(4.1)
    s.ask("parse_amount rejects '1e3' — can you make scientific notation work?")
    s.read("src/parser/numbers.py", note="Reading the amount parser")
    run = Pytest([PyFile("tests/test_numbers.py", ".F.")], [NUMBERS_SCIENTIFIC], 0.04)
    s.command("python -m pytest tests/test_numbers.py -q", str(run), 1, note="Reproducing with the tests")
    s.say(
        "Reproduced: `parse_amount('1e3')` raises. Before I change it: invoices are typed by people, and '1e3' "
        "is more often a typo than a thousand. Should scientific notation be accepted everywhere, or only in "
        "the CSV importer?"
    )
    s = h.codex(0.9)
    s.ask("invoice totals are off by a cent and tests/test_invoice.py fails, please fix it")
    run = Pytest([PyFile("tests/test_invoice.py", ".F")], [_invoice("1.78")], 0.05)
    s.command("python -m pytest tests/test_invoice.py -q", str(run), 1, note="Running the invoice tests")
    s.read("src/billing/invoice.py")
    s.edit(
        "src/billing/invoice.py",
        "from decimal import ROUND_HALF_EVEN, Decimal",
        "from decimal import ROUND_HALF_UP, Decimal",
        note="Switching the rounding to half-up",
    )
    s.edit(
        "src/billing/invoice.py",
        '    return float(gross.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))',
        '    return float(gross.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))',
    )
    run = Pytest([PyFile("tests/test_invoice.py", ".F")], [_invoice("1.79")], 0.05)
    s.command("python -m pytest tests/test_invoice.py -q", str(run), 1)
    run = Pytest([PyFile("tests/test_invoice.py", "F")], [_invoice("1.79")], 0.04)
    s.command("python -m pytest tests/test_invoice.py::test_total_rounds_half_up -q", str(run), 1)
    s.say(
        "The amount is right now (1.79) but the test still fails: `total()` returns a float and the test "
        "compares it with a Decimal. Returning Decimal changes every caller (reports, the API's JSON), so I "
        "stopped here. Do you want `total()` to return Decimal?"
    )
    h.target(
        "tests/test_invoice.py",
        "test_invoice.py",
        "test_invoice",
        "test_total_rounds_half_up",
        "src/billing/invoice.py",
        "billing/invoice.py",
        "billing.invoice",
        why="failed three times in the latest session and left failing; test_numbers failed once, earlier",
    )


def _tax(got: str) -> PyFail:
    return PyFail(
        "tests/test_tax.py",
        "test_estonia_2025",
        ("def test_estonia_2025():", '    assert vat_rate("EE") == Decimal("0.24")'),
        (f"AssertionError: assert Decimal('{got}') == Decimal('0.24')", f" +  where Decimal('{got}') = vat_rate('EE')"),
        line_of("tests/test_tax.py", '"EE"'),
    )


@scenario("resolved_then_request", fast=True)
def resolved_then_request(h: Builder) -> None:
    """tests/test_tax.py failed twice and was then fixed (it passes); the person's last request, left without an
    answer, is about src/utils/retry.py."""
    h.tree(PYTHON)
    s = h.claude(2.5)
    s.ask("tests/test_tax.py fails on the new Estonian VAT rate, fix it")
    failing = str(Pytest([PyFile("tests/test_tax.py", ".F")], [_tax("0.22")], 0.03))
    s.command("python3 -m pytest tests/test_tax.py -q", failing, 1, desc="Run the tax tests")
    s.command("python3 -m pytest tests/test_tax.py -q -x", failing, 1, desc="Run the tax tests, stop at the first")
    s.read("src/billing/tax.py")
    s.edit("src/billing/tax.py", '"EE": Decimal("0.22")', '"EE": Decimal("0.24")', note="Estonia is 24% since July.")
    s.command("python3 -m pytest tests/test_tax.py -q", str(Pytest([PyFile("tests/test_tax.py", "..")])), 0)
    s.say("Fixed: Estonia's standard rate is 24% since July 2025. `tests/test_tax.py` passes.")
    s = h.claude(0.3)
    s.ask(
        "make src/utils/retry.py honour the Retry-After header (seconds or an HTTP date) before it falls back to "
        "the exponential backoff"
    )
    s.read("src/utils/retry.py", note="Let me read the retry helper first.")
    h.target(
        "src/utils/retry.py",
        "utils/retry.py",
        "retry.py",
        "utils.retry",
        why="the last request, not answered; the tax test failures were fixed in the same history",
    )


RETRY_CAP = PyFail(
    "tests/test_retry.py",
    "test_backoff_caps_at_max",
    ("def test_backoff_caps_at_max():", "    assert backoff(10) <= MAX_DELAY"),
    ("assert 512.31 <= 30.0", " +  where 512.31 = backoff(10)"),
    line_of("tests/test_retry.py", "backoff(10)"),
)
RETRY_JITTER = PyFail(
    "tests/test_retry.py",
    "test_backoff_caps_at_max",
    ("def test_backoff_caps_at_max():", "    assert backoff(10) <= MAX_DELAY"),
    ("assert 30.27 <= 30.0", " +  where 30.27 = backoff(10)"),
    line_of("tests/test_retry.py", "backoff(10)"),
)
WHOLE_SUITE = (
    PyFile("tests/test_dates.py", "..."),
    PyFile("tests/test_export.py", "."),
    PyFile("tests/test_invoice.py", ".."),
    PyFile("tests/test_numbers.py", "..."),
    PyFile("tests/test_pagination.py", ".."),
)


@scenario("bare_pytest", fast=True)
def bare_pytest(h: Builder) -> None:
    """A bare `pytest` (no arguments) failed three times; its output names
    tests/test_retry.py::test_backoff_caps_at_max. Before it: a green run, a session in dotfiles."""
    h.tree(PYTHON)
    dotfiles = h.elsewhere("dotfiles", DOTFILES)
    s: Session = h.codex(5.5)
    s.ask("bump httpx to 0.28 and check nothing breaks")
    s.edit("pyproject.toml", '"httpx>=0.27"', '"httpx>=0.28"', note="Bumping the pin")
    green = Pytest((*WHOLE_SUITE, PyFile("tests/test_retry.py", ".."), PyFile("tests/test_tax.py", "..")), (), 0.57)
    s.command("python -m pytest -q", str(green), 0, note="Running the suite")
    s.say("Bumped httpx to >=0.28; the suite passes.")
    d = h.claude(2.4, where=dotfiles)
    d.ask("make the prompt show the git branch")
    d.read("zshrc")
    d.edit("zshrc", "export EDITOR=vim", "export EDITOR=vim\nautoload -Uz vcs_info")
    d.say("Added vcs_info; open a new shell to see the branch.")
    s = h.claude(1.5)
    s.ask("backoff ignores MAX_DELAY again, retries wait for minutes in prod")
    root = str(h.repo)
    suite = (*WHOLE_SUITE, PyFile("tests/test_retry.py", ".F"), PyFile("tests/test_tax.py", ".."))
    run = Pytest(suite, [RETRY_CAP], 0.61, quiet=False, rootdir=root)
    s.command("pytest", str(run), 1, desc="Run the test suite")
    s.read("src/utils/retry.py")
    s.edit(
        "src/utils/retry.py",
        "    return base * 2**attempt + random.uniform(0, base)",
        "    return min(MAX_DELAY, base * 2**attempt) + random.uniform(0, base)",
        note="Capping the delay at MAX_DELAY.",
    )
    run = Pytest(suite, [RETRY_JITTER], 0.58, quiet=False, rootdir=root)
    s.command("pytest", str(run), 1, desc="Run the test suite")
    s.command("pytest -x", str(run), 1, desc="Run the test suite, stop at the first failure")
    s.say(
        "The delay is capped now, but `test_backoff_caps_at_max` still fails: the jitter is added after the "
        "cap, so a capped delay can reach MAX_DELAY + 0.5. I don't know whether MAX_DELAY should include the "
        "jitter (it changes how long clients wait), so I stopped here."
    )
    h.target(
        "tests/test_retry.py",
        "test_retry.py",
        "test_retry",
        "test_backoff_caps_at_max",
        "src/utils/retry.py",
        "utils/retry.py",
        "retry.py",
        why="the only failing test in the suite, three failed runs, left failing",
    )


@scenario("interrupted_routes")
def interrupted_routes(h: Builder) -> None:
    """The person asked to refactor src/api/routes.py and interrupted the agent while it was answering; nothing
    was asked after that."""
    h.tree(PYTHON)
    s = h.claude(3.0)
    s.ask("add a GET /orders route that lists orders with the existing pagination helper")
    s.read("src/api/routes.py")
    s.read("src/api/handlers.py")
    s.command("python3 -m pytest -q", str(Pytest((*WHOLE_SUITE, PyFile("tests/test_routes.py", ".")))), 0)
    s.say("`GET /orders` is already routed to `list_orders`, which uses `page()`. Nothing to add; tests pass.")
    s = h.claude(0.6)
    s.ask("Refactor src/api/routes.py so every handler validates its payload with the models in src/api/schemas.py")
    s.read("src/api/routes.py", note="I'll start with the routes and the schemas.")
    s.read("src/api/schemas.py")
    s.read("src/api/handlers.py")
    s.say("Only `create_invoice` takes a payload today; `InvoiceIn` covers it. I'd add a `validated(model)`")
    s.interrupt()
    h.target(
        "src/api/routes.py",
        "api/routes.py",
        "routes.py",
        "api.routes",
        why="the last request, interrupted and not taken up again",
    )


@scenario("feature_export")
def feature_export(h: Builder) -> None:
    """An explicit request to add a feature to src/reports/export.py; the agent proposed a plan and the person
    never answered. No failures."""
    h.tree(PYTHON)
    s = h.codex(3.2)
    s.ask("what does scripts/backfill.py do?")
    s.read("scripts/backfill.py")
    s.say("It is a stub: it prints its arguments and the `subtotal` function. It backfills nothing yet.")
    s = h.codex(1.1)
    s.ask(
        "Add a to_csv(rows, columns) function to src/reports/export.py: quote fields that contain commas, quotes "
        "or newlines, and keep it dependency-free (the csv module is fine)"
    )
    s.read("src/reports/export.py", note="Reading the exporter")
    s.read("tests/test_export.py")
    s.command("python -m pytest tests/test_export.py -q", str(Pytest([PyFile("tests/test_export.py", ".")])), 0)
    s.say(
        "Plan: `to_csv(rows, columns)` next to `to_json`, using `csv.writer` with QUOTE_MINIMAL into a StringIO, "
        "the header from `columns`, missing keys as empty fields; tests for commas, quotes and newlines in "
        "tests/test_export.py. Shall I go ahead?"
    )
    h.target(
        "src/reports/export.py",
        "reports/export.py",
        "export.py",
        "reports.export",
        why="the person's explicit request, planned but not done",
    )


@scenario("flaky_resolved_new_abandoned")
def flaky_resolved_new_abandoned(h: Builder) -> None:
    """tests/test_dates.py failed twice and was fixed; two days later tests/test_numbers.py failed once and the
    session ended on that failure."""
    h.tree(PYTHON)
    s = h.claude(3.2)
    s.ask("test_dates fails on CI since the new year, check it")
    failing = str(Pytest([PyFile("tests/test_dates.py", ".F.")], [_dates_week("2026, 2, 4")], 0.05))
    s.command("python3 -m pytest tests/test_dates.py -q", failing, 1)
    s.read("src/parser/dates.py")
    s.command("python3 -m pytest tests/test_dates.py -q -k iso_week", failing, 1)
    s.edit("src/parser/dates.py", DATES_RETURN, DATES_FIXED, note="Week 1 starts on that Monday: subtract one week.")
    s.command("python3 -m pytest tests/test_dates.py -q", str(Pytest([PyFile("tests/test_dates.py", "...")])), 0)
    s.say("Fixed the off-by-one week in `parse_iso_week`; tests/test_dates.py passes.")
    s = h.claude(0.8)
    s.ask("parse_amount should accept '1e3' from the bank CSVs")
    s.read("src/parser/numbers.py")
    run = Pytest([PyFile("tests/test_numbers.py", ".F.")], [NUMBERS_SCIENTIFIC], 0.04)
    s.command("python3 -m pytest tests/test_numbers.py -q", str(run), 1, desc="Run the number parsing tests")
    h.target(
        "tests/test_numbers.py",
        "test_numbers.py",
        "test_numbers",
        "test_scientific",
        "src/parser/numbers.py",
        "parser/numbers.py",
        "parser.numbers",
        why="the open failure: the session ended on it; the dates failures were fixed",
    )


@scenario("pagination_followup")
def pagination_followup(h: Builder) -> None:
    """Several sessions; the last request names src/api/pagination.py, its test failed once and the agent asked
    which fix the person wants."""
    h.tree(PYTHON)
    s: Session = h.claude(5.0)
    s.ask("add a test for the first page of GET /orders")
    s.read("tests/test_pagination.py")
    s.command(
        "python3 -m pytest tests/test_pagination.py -q -k first",
        str(Pytest([PyFile("tests/test_pagination.py", ".")])),
        0,
    )
    s.say("There is one already: `test_first_page` in tests/test_pagination.py, and it passes.")
    s = h.codex(3.1)
    s.ask("list the routes we expose")
    s.read("src/api/routes.py")
    s.say("GET /orders, POST /invoices, GET /invoices/{id}, DELETE /invoices/{id}.")
    s = h.claude(1.6)
    s.ask("the cursor in src/api/pagination.py breaks when the item it points to was deleted — fix it")
    s.read("src/api/pagination.py")
    failure = PyFail(
        "tests/test_pagination.py",
        "test_cursor_of_deleted_item",
        ("def test_cursor_of_deleted_item(rows):", '    assert page(rows[1:], "a", size=2)["items"] == rows[1:]'),
        ("ValueError: 'a' is not in list",),
        line_of("tests/test_pagination.py", 'page(rows[1:], "a"'),
        "ValueError",
        (
            "items = [{'id': 'b'}, {'id': 'c'}], cursor = 'a', size = 2",
            "",
            "    def page(items, cursor, size=50):",
            '        ids = [item["id"] for item in items]',
            ">       start = ids.index(cursor) + 1 if cursor else 0",
            "E       ValueError: 'a' is not in list",
        ),
        f"src/api/pagination.py:{line_of('src/api/pagination.py', 'ids.index')}",
    )
    run = Pytest([PyFile("tests/test_pagination.py", ".F")], [failure], 0.03)
    s.command("python3 -m pytest tests/test_pagination.py -q", str(run), 1)
    s.say(
        "The cursor is found by position, so a deleted item's id is not there. Two fixes: (1) make the cursor "
        "the last id plus its sort key and seek past it, which changes the cursor format for clients; (2) fall "
        "back to the first page. Which do you prefer?"
    )
    h.target(
        "src/api/pagination.py",
        "api/pagination.py",
        "pagination.py",
        "api.pagination",
        "tests/test_pagination.py",
        "test_pagination",
        "test_cursor_of_deleted_item",
        why="the last request, its failing test, and the agent's open question",
    )


@scenario("cd_auth_tokens")
def cd_auth_tokens(h: Builder) -> None:
    """Codex 0.58 ran `cd services/auth && python -m pytest -q tests/test_tokens.py` three times, failing, and
    stopped to ask."""
    h.tree(SERVICES)
    s = h.codex(2.0, legacy=True)
    s.ask("refresh tokens minted by the old auth service crash on rotation, see CI")
    cmd = "cd services/auth && python -m pytest -q tests/test_tokens.py"
    at = line_of("services/auth/auth/tokens.py", 'claims["exp"]')

    def failure(error: str, source: str) -> PyFail:
        return PyFail(
            "tests/test_tokens.py",
            "test_refresh_rotates",
            ("def test_refresh_rotates():", '    old = {"sub": "u1", "iat": 1}', '    assert refresh(old)["iat"] != 1'),
            (error,),
            line_of("services/auth/tests/test_tokens.py", 'refresh(old)["iat"]'),
            error.split(":")[0],
            (
                "claims = {'iat': 1, 'sub': 'u1'}, ttl = 900",
                "",
                "    def refresh(claims: dict[str, object], ttl: int = 900) -> dict[str, object]:",
                "        rotated = dict(claims)",
                '        rotated["iat"] = int(time.time())',
                f">       {source}",
                f"E       {error}",
            ),
            f"auth/tokens.py:{at}",
        )

    key_error = failure("KeyError: 'exp'", 'rotated["exp"] = claims["exp"] + ttl')
    s.command(cmd, str(Pytest([PyFile("tests/test_tokens.py", ".F")], [key_error], 0.02)), 1, note="Running the tests")
    s.read("services/auth/auth/tokens.py")
    s.command(cmd + " --tb=long", str(Pytest([PyFile("tests/test_tokens.py", ".F")], [key_error], 0.02)), 1)
    s.edit(
        "services/auth/auth/tokens.py",
        '    rotated["exp"] = claims["exp"] + ttl',
        '    rotated["exp"] = claims.get("exp") + ttl',
        note="Tolerating a missing exp",
    )
    type_error = failure(
        "TypeError: unsupported operand type(s) for +: 'NoneType' and 'int'", 'rotated["exp"] = claims.get("exp") + ttl'
    )
    s.command(cmd, str(Pytest([PyFile("tests/test_tokens.py", ".F")], [type_error], 0.02)), 1)
    s.say(
        "Tokens from the old service have no `exp` at all, so `refresh()` cannot extend it. Should a rotated "
        "token's expiry start from its `iat` or from now? I left the failing change in services/auth/auth/"
        "tokens.py until you decide."
    )
    h.target(
        "services/auth/tests/test_tokens.py",
        "tests/test_tokens.py",
        "test_tokens.py",
        "test_tokens",
        "test_refresh_rotates",
        "services/auth/auth/tokens.py",
        "auth/tokens.py",
        "auth.tokens",
        why="the person's request, failed three times (run from services/auth) and left failing",
    )


@scenario("ruff_handlers")
def ruff_handlers(h: Builder) -> None:
    """`ruff check` failed twice on src/api (every error in src/api/handlers.py); one error is left."""
    h.tree(PYTHON)
    s = h.codex(2.3)
    s.ask("ruff fails in CI on the api package — please clean it up")
    errors = [
        ("src/api/handlers.py", 3, 1, "I001", "[*] Import block is un-sorted or un-formatted"),
        ("src/api/handlers.py", 3, 8, "F401", "[*] `os` imported but unused"),
        ("src/api/handlers.py", line_of("src/api/handlers.py", "except:"), 5, "E722", "Do not use bare `except`"),
    ]
    s.command("ruff check --output-format concise src/api", o.ruff(errors, fixable=2), 1, note="Running ruff")
    left = o.ruff(errors[2:]).replace("Found 1 error.", "Found 3 errors (2 fixed, 1 remaining).")
    s.command("ruff check --fix --output-format concise src/api", left, 1, note="Applying the safe fixes")
    s.read("src/api/handlers.py")
    s.say(
        "Fixed the import errors. The bare `except` in `create_invoice` should catch `json.JSONDecodeError`, "
        "but then a body that is not UTF-8 raises UnicodeDecodeError: should that be a 400 too? Left it for now."
    )
    h.target(
        "src/api/handlers.py",
        "api/handlers.py",
        "handlers.py",
        "api.handlers",
        why="every remaining lint error is in it; the request is not done",
    )


@scenario("mypy_invoice", fast=True)
def mypy_invoice(h: Builder) -> None:
    """`mypy src/billing/invoice.py` failed twice; one error is left in src/billing/invoice.py and the agent asked
    how to fix it. mypy also failed three times in repo-client (a sibling directory sharing the repo's prefix)."""
    h.tree(PYTHON)
    client = h.elsewhere("repo-client", CLIENT)
    n = h.claude(0.5, where=client)
    n.ask("type-check the client")
    for _ in range(3):
        err = [("client/http.py", 1, "Function is missing a type annotation", "no-untyped-def")]
        n.command("mypy client", o.mypy(err, 1), 1)
    n.say("`get` needs annotations; do you want `str -> bytes`?")
    s = h.codex(1.8)
    s.ask("make mypy pass for the billing package")
    ret = line_of("src/billing/invoice.py", "return float(")
    due = line_of("src/billing/invoice.py", "def due_date")
    errors = [
        (
            "src/billing/invoice.py",
            ret,
            'Incompatible return value type (got "float", expected "Decimal")',
            "return-value",
        ),
        ("src/billing/invoice.py", due, "Function is missing a type annotation", "no-untyped-def"),
    ]
    s.command("mypy src/billing/invoice.py", o.mypy(errors, 2), 1, note="Type-checking the billing module")
    s.read("src/billing/invoice.py")
    s.edit(
        "src/billing/invoice.py",
        "def due_date(issued, days=30):",
        "def due_date(issued: date, days: int = 30) -> date:",
        note="Annotating due_date",
    )
    s.command("mypy src/billing/invoice.py", o.mypy(errors[:1], 2), 1)
    s.say(
        "One error left: `total()` says it returns Decimal but returns a float. Returning the Decimal changes "
        "the API's JSON (numbers become strings), so I left it: which do you want?"
    )
    h.target(
        "src/billing/invoice.py",
        "billing/invoice.py",
        "invoice.py",
        "billing.invoice",
        why="the type errors are all in it and one is left",
    )


STRIP = line_of("src/parser/numbers.py", "def _strip")
NUMBERS_STRICT = [
    ("src/parser/numbers.py", STRIP, "Function is missing a type annotation", "no-untyped-def"),
    (
        "src/parser/numbers.py",
        line_of("src/parser/numbers.py", "= _strip(text)"),
        'Call to untyped function "_strip" in typed context',
        "no-untyped-call",
    ),
]


@scenario("mypy_whole_src")
def mypy_whole_src(h: Builder) -> None:
    """Claude Code 2.0: `mypy src/parser` failed twice (errors in src/parser/numbers.py) and the person
    interrupted."""
    h.tree(PYTHON)
    s = h.claude(2.1, legacy=True)
    s.ask("mypy fails on the parser package since we turned on strict")
    s.command("mypy src/parser", o.mypy(NUMBERS_STRICT, 3), 1)
    s.read("src/parser/numbers.py")
    s.edit("src/parser/numbers.py", "def _strip(text):", "def _strip(text: str):")
    left = [("src/parser/numbers.py", STRIP, "Function is missing a return type annotation", "no-untyped-def")]
    s.command("mypy src/parser", o.mypy(left, 3), 1)
    s.say("One left: `_strip` needs a return type. I'll also check whether")
    s.interrupt()
    h.target(
        "src/parser/numbers.py",
        "parser/numbers.py",
        "numbers.py",
        "parser.numbers",
        why="every type error is in it, the check still fails",
    )


@scenario("question_unanswered")
def question_unanswered(h: Builder) -> None:
    """`npm run lint` in web failed twice and was fixed; the last request (src/fx/rates.py) got a question back
    that nobody answered."""
    h.tree(merge(PYTHON, WEB))
    s = h.codex(4.4)
    s.ask("web lint fails on an unused variable")
    lint = (
        o.npm_header("web", "0.3.0", "lint", "eslint src")
        + f"\n{h.repo}/web/src/components/Cart.tsx\n  3:73  error  'taxRate' is defined but never used  "
        "@typescript-eslint/no-unused-vars\n\n✖ 1 problem (1 error, 0 warnings)\n"
    )
    s.command("cd web && npm run lint", lint, 1)
    s.command("cd web && npm run lint -- --max-warnings 0", lint, 1)
    s.edit(
        "web/src/components/Cart.tsx",
        "  const total = subtotal;",
        "  const total = subtotal * (1 + taxRate);",
        note="taxRate was meant to be applied",
    )
    s.command("cd web && npm run lint", o.npm_header("web", "0.3.0", "lint", "eslint src"), 0)
    s.say("Lint passes: `taxRate` is now applied to the total (it was passed but unused).")
    s = h.codex(0.7)
    s.ask("add a timeout parameter to fetch_rates in src/fx/rates.py (default 5 seconds) and pass it to httpx")
    s.read("src/fx/rates.py")
    s.say(
        "Should the timeout also apply when a client is passed in (overriding the client's own timeout), or "
        "only to the default client?"
    )
    h.target(
        "src/fx/rates.py",
        "fx/rates.py",
        "rates.py",
        "fx.rates",
        why="the last request, waiting on the person's answer; the lint failures were fixed",
    )


@scenario("interrupted_codex_import")
def interrupted_codex_import(h: Builder) -> None:
    """Asked to make tests/test_importer.py fast, Codex measured it and read the loader; the person
    interrupted."""
    h.tree(PYTHON)
    s = h.codex(0.5)
    s.ask("tests/test_importer.py takes 40 s on every run, make it fast without changing what it checks")
    slow = (
        ".                                                                        [100%]\n"
        + o._rule("slowest 3 durations")
        + "\n41.02s call     tests/test_importer.py::test_load_statement\n"
        "0.01s setup    tests/test_importer.py::test_load_statement\n\n(1 durations < 0.005s hidden.  Use -vv to "
        "show these durations.)\n1 passed in 41.07s"
    )
    s.command("python -m pytest tests/test_importer.py -q --durations=3", slow, 0, note="Measuring the test")
    s.read("src/importer/loader.py")
    s.interrupt()
    h.target(
        "tests/test_importer.py",
        "test_importer.py",
        "test_importer",
        "test_load_statement",
        "src/importer/loader.py",
        "importer/loader.py",
        "importer.loader",
        why="the last request, interrupted and not taken up again",
    )


@scenario("unittest_slugify")
def unittest_slugify(h: Builder) -> None:
    """`python3 -m unittest tests.test_slugify` failed three times; the agent stopped to ask about a
    dependency."""
    h.tree(PYTHON)
    s = h.claude(1.9)
    s.ask("invoice URLs drop accented letters: 'Café Crème' becomes 'caf-crme'")
    path = str(h.repo / "tests/test_slugify.py")
    line = line_of("tests/test_slugify.py", "Café Crème")
    code = 'self.assertEqual(slugify("Café Crème"), "cafe-creme")'

    def fail(got: str) -> str:
        report = o.unittest_fail(
            "tests.test_slugify", "SlugifyTest", "test_strips_accents", path, line, code, f"'{got}' != 'cafe-creme'", 3
        )
        return report.replace("F..", ".F.", 1)

    s.command("python3 -m unittest tests.test_slugify", fail("caf-crme"), 1)
    s.read("src/text/slugify.py")
    s.edit(
        "src/text/slugify.py",
        '    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")',
        '    text = text.encode("ascii", "ignore").decode()\n'
        '    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")',
    )
    s.command("python3 -m unittest tests.test_slugify", fail("caf-crme"), 1)
    s.command("python3 -m unittest -v tests.test_slugify", fail("caf-crme"), 1)
    s.say(
        "Dropping non-ASCII loses the letters instead of transliterating them. The clean fix is the "
        "`python-slugify` package (it also handles ß, Ø, Ł…), and you asked me not to add dependencies without "
        "asking: may I add it?"
    )
    h.target(
        "tests/test_slugify.py",
        "test_slugify.py",
        "tests.test_slugify",
        "test_slugify",
        "test_strips_accents",
        "src/text/slugify.py",
        "text/slugify.py",
        "slugify.py",
        why="the person's report, its test failed three times and is still failing",
    )


@scenario("make_test_wrapper")
def make_test_wrapper(h: Builder) -> None:
    """`make test` (pytest underneath) failed twice on tests/test_routes.py::test_delete_returns_204, which needs
    a fixture that does not exist."""
    h.tree(PYTHON)
    s: Session = h.claude(4.8)
    s.ask("run the tests before I merge the VAT branch")
    green = "python3 -m pytest -q\n" + str(Pytest((*WHOLE_SUITE, PyFile("tests/test_tax.py", "..")), (), 0.41))
    s.command("make test", green, 0, desc="Run the test suite")
    s.say("All 13 tests pass; good to merge.")
    s = h.codex(2.9)
    s.ask("DELETE /invoices/{id} should return 204, the contract test says so")
    test_file = h.repo / "tests/test_routes.py"
    line = line_of("tests/test_routes.py", "def test_delete_returns_204")
    error = "\n".join(
        [
            "python3 -m pytest -q",
            ".....................E" + " " * 52 + "[100%]",
            o._rule("ERRORS"),
            o._rule("ERROR at setup of test_delete_returns_204", "_"),
            f"file {test_file}, line {line}",
            "  def test_delete_returns_204(client):",
            "E       fixture 'client' not found",
            ">       available fixtures: cache, capfd, capfdbinary, caplog, capsys, capsysbinary, doctest_namespace, "
            "monkeypatch, pytestconfig, record_property, record_testsuite_property, record_xml_attribute, "
            "recwarn, rows, tmp_path, tmp_path_factory, tmpdir, tmpdir_factory",
            ">       use 'pytest --fixtures [testpath]' for help on them.",
            "",
            f"{test_file}:{line}",
            o._rule("short test summary info"),
            "ERROR tests/test_routes.py::test_delete_returns_204",
            "21 passed, 1 error in 0.38s",
            "make: *** [Makefile:2: test] Error 1",
        ]
    )
    s.command("make test", error, 2, note="Running the suite")
    s.read("src/api/handlers.py")
    s.edit("src/api/handlers.py", "    return 200, {}", "    return 204, {}", note="delete_invoice returns 204")
    s.command("make test", error, 2)
    s.say(
        "`delete_invoice` returns 204 now, but `test_delete_returns_204` cannot run: it needs a `client` "
        "fixture that tests/conftest.py does not define. Which HTTP test client does the app use?"
    )
    h.target(
        "tests/test_routes.py",
        "test_routes.py",
        "test_routes",
        "test_delete_returns_204",
        "tests/conftest.py",
        why="the contract test is still erroring (its fixture is missing from tests/conftest.py); not done",
    )


# ------------------------------------------------------------------------------------------- web


CART_TAX = JestSuite(
    "src/components/Cart.test.tsx",
    "Cart",
    (("renders the empty state", True, 23), ("shows the total with tax", False, 9)),
)


def _cart(received: str) -> JestSuite:
    at = line_of("web/src/components/Cart.test.tsx", 'toHaveTextContent("$21.40")')
    src = ALL["web/src/components/Cart.test.tsx"].splitlines()
    snippet = [f"      {n} | {src[n - 1]}".rstrip() for n in range(at - 2, at)]
    snippet += [f"    > {at} | {src[at - 1]}", "         |                                         ^"]
    snippet += [f"      {n} | {src[n - 1]}".rstrip() for n in range(at + 1, at + 3)]
    failure = (
        "expect(element).toHaveTextContent()",
        "",
        "Expected element to have text content:",
        "  $21.40",
        "Received:",
        f"  {received}",
        "",
        *snippet,
        "",
        f"  at Object.<anonymous> (src/components/Cart.test.tsx:{at}:41)",
    )
    return JestSuite(CART_TAX.file, CART_TAX.describe, CART_TAX.tests, failure)


FORMAT_OK = JestSuite(
    "src/lib/format.test.ts", "", (("formats money", True, 4), ("formats dates in the user's locale", True, 2))
)
USECART_OK = JestSuite(
    "src/hooks/useCart.test.ts", "", (("adds an item", True, 12), ("removes item when quantity hits zero", True, 3))
)


@scenario("npm_web_fails_api_passes", fast=True)
def npm_web_fails_api_passes(h: Builder) -> None:
    """`npm test` passed in api/ and failed twice in web/ (jest: FAIL src/components/Cart.test.tsx); the agent
    stopped with the web test failing."""
    h.tree(WEB)
    s = h.claude(2.2)
    s.ask("run the web and api tests before I cut the release")
    api = (
        o.npm_header("api", "1.4.0", "test", "jest")
        + "\n"
        + o.jest([JestSuite("src/server.test.ts", "server", (("server is created", True, 3),))], 0.92)
    )
    s.command("cd api && npm test", api, 0, desc="Run the api tests")
    web = o.npm_header("web", "0.3.0", "test", "jest") + "\n" + o.jest([_cart("$20.00"), FORMAT_OK, USECART_OK])
    s.command("cd web && npm test", web, 1, desc="Run the web tests")
    s.read("web/src/components/Cart.tsx", note="The web Cart test fails; the tax is not applied.")
    s.edit("web/src/components/Cart.tsx", "  const total = subtotal;", "  const total = subtotal + taxRate;")
    web = o.npm_header("web", "0.3.0", "test", "jest") + "\n" + o.jest([_cart("$20.07"), FORMAT_OK, USECART_OK])
    s.command("cd web && npm test", web, 1, desc="Run the web tests again")
    s.say(
        "api: all tests pass. web: `Cart › shows the total with tax` fails — the total ignored `taxRate`, and my "
        "first change added the rate instead of applying it. Don't cut the release yet; I can fix the Cart "
        "total next."
    )
    h.target(
        "web/src/components/Cart.test.tsx",
        "src/components/Cart.test.tsx",
        "Cart.test.tsx",
        "web/src/components/Cart.tsx",
        "components/Cart.tsx",
        "Cart.tsx",
        why="the web test suite fails on it (api passes); the release waits on it",
    )


@scenario("tsc_format")
def tsc_format(h: Builder) -> None:
    """The web build fails on one type error in web/src/lib/format.ts; the agent asked how to fix it."""
    h.tree(WEB)
    s = h.claude(3.0)
    s.ask("the web build is broken after the i18n merge")
    line = line_of("web/src/lib/format.ts", "const lang")
    err = [
        (
            "src/lib/format.ts",
            line,
            9,
            "TS2322",
            "Type 'string | undefined' is not assignable to type 'string'.\n  Type 'undefined' is not assignable "
            "to type 'string'.",
        )
    ]
    build = o.npm_header("web", "0.3.0", "build", "tsc --noEmit && vite build") + "\n" + o.tsc(err)
    s.command("cd web && npm run build", build, 2, desc="Build the web app")
    s.read("web/src/lib/format.ts")
    s.command("cd web && npx tsc --noEmit", o.tsc(err), 2, desc="Type-check the web app")
    s.say(
        "The build fails on one type error in `web/src/lib/format.ts`: `formatDate`'s optional `locale` is "
        "assigned to a `string`. Should `locale` be required, or fall back to `navigator.language`?"
    )
    h.target(
        "web/src/lib/format.ts",
        "src/lib/format.ts",
        "lib/format.ts",
        "format.ts",
        why="the only error breaking the build",
    )


ESLINT_9 = """
Oops! Something went wrong! :(

ESLint: 9.14.0

ESLint couldn't find an eslint.config.(js|mjs|cjs) file.

From ESLint v9.0.0, the default configuration file is now eslint.config.js.
"""


@scenario("noise_other_workspaces", fast=True, since_days=14)
def noise_other_workspaces(h: Builder) -> None:
    """Many failures elsewhere: in repo-client (a sibling directory sharing the repo's prefix), in dotfiles, and
    in the repo 25 days ago; in the repo this week `npx jest src/lib/format.test.ts` failed twice in web/."""
    h.tree(WEB)
    client = h.elsewhere("repo-client", CLIENT)
    dotfiles = h.elsewhere("dotfiles", DOTFILES)
    old = h.codex(25.0)
    old.ask("lint is failing everywhere after the eslint upgrade")
    for _ in range(4):
        old.command("cd web && npm run lint", o.npm_header("web", "0.3.0", "lint", "eslint src") + ESLINT_9, 2)
    old.say("ESLint 9 needs a flat config; I've stopped since that is a bigger change.")
    c = h.claude(3.0)
    c.ask("bump jest to 29.7 in web and api")
    c.read("web/package.json")
    c.crash_line()
    c.read("api/package.json")
    web = o.npm_header("web", "0.3.0", "test", "jest") + "\n" + o.jest([FORMAT_OK, USECART_OK])
    c.command("cd web && npm test", web, 0)
    c.say("Both packages already pin jest ^29.7.0; web's tests pass.")
    n = h.claude(1.0, where=client)
    n.ask("fix the client tests")
    client_fail = PyFail(
        "tests/test_client.py",
        "test_get",
        ("def test_get():", "    assert get('https://x')"),
        ("NotImplementedError",),
        5,
        "NotImplementedError",
    )
    for _ in range(4):
        n.command(
            "python3 -m pytest tests/test_client.py -q",
            str(Pytest([PyFile("tests/test_client.py", "F")], [client_fail])),
            1,
        )
    n.say("`get` is not implemented yet; the test cannot pass until it is.")
    d = h.codex(2.0, where=dotfiles)
    d.ask("install.sh fails on macOS")
    d.command("sh install.sh", "ln: ~/.zshrc: No such file or directory", 1)
    d.command(
        "sh -x install.sh", "+ ln -sf /Users/dev/dotfiles/zshrc ~/.zshrc\nln: ~/.zshrc: No such file or directory", 1
    )
    d.say("`~` is not expanded inside the quotes on macOS's sh; use $HOME.")
    s = h.codex(1.4)
    s.ask("the date formatting test in web fails on my machine (de-DE locale)")
    at = line_of("web/src/lib/format.test.ts", "de-DE")
    fmt = JestSuite(
        "src/lib/format.test.ts",
        "",
        (("formats money", True, 3), ("formats dates in the user's locale", False, 5)),
        (
            "expect(received).toBe(expected) // Object.is equality",
            "",
            'Expected: "01.03.2026"',
            'Received: "Mar 1, 2026"',
            "",
            f"  at Object.<anonymous> (src/lib/format.test.ts:{at}:55)",
        ),
    )
    s.command("cd web && npx jest src/lib/format.test.ts", o.jest([fmt], 1.12), 1, note="Reproducing")
    s.read("web/src/lib/format.ts")
    s.edit(
        "web/src/lib/format.ts",
        '{ dateStyle: "medium" }',
        '{ day: "2-digit", month: "2-digit", year: "numeric" }',
        note="Using explicit parts instead of dateStyle",
    )
    ts_error = JestSuite(
        "src/lib/format.test.ts",
        "",
        (),
        (
            f"src/lib/format.ts:{line_of('web/src/lib/format.ts', 'const lang')}:9 - error TS2322: Type 'string | "
            "undefined' is not assignable to type 'string'.",
        ),
    )
    s.command("cd web && npx jest src/lib/format.test.ts", o.jest([ts_error], 0.88), 1)
    s.cut_off()
    h.target(
        "web/src/lib/format.test.ts",
        "src/lib/format.test.ts",
        "format.test.ts",
        "web/src/lib/format.ts",
        "lib/format.ts",
        "format.ts",
        why="the repo's only open failure this week; the rest is other directories or older than the window",
    )


@scenario("jest_usecart")
def jest_usecart(h: Builder) -> None:
    """`cd web && npx jest src/hooks/useCart.test.ts` failed three times; the session ended on the failure. jest
    also failed in another project that day."""
    h.tree(WEB)
    shop = h.elsewhere("shop-admin", {"package.json": '{"name": "shop-admin", "scripts": {"test": "jest"}}\n'})
    n = h.claude(1.1, where=shop)
    n.ask("the admin tests fail after the react 19 upgrade")
    for _ in range(2):
        n.command(
            "npx jest",
            " FAIL  src/Orders.test.tsx\n  ● Test suite failed to run\n\n    Cannot find module 'react-dom/test-utils'",
            1,
        )
    n.say("`react-dom/test-utils` is gone in React 19; the tests need @testing-library/react's `act`.")
    s = h.codex(2.7)
    s.ask("useCart keeps items with quantity 0 in the cart, fix the hook")
    at = line_of("web/src/hooks/useCart.test.ts", "toEqual([])")
    failing = JestSuite(
        "src/hooks/useCart.test.ts",
        "",
        (("adds an item", True, 14), ("removes item when quantity hits zero", False, 6)),
        (
            "expect(received).toEqual(expected) // deep equality",
            "",
            "- Expected  - 0",
            "+ Received  + 6",
            "",
            "- Array []",
            "+ Array [",
            "+   Object {",
            '+     "id": "a",',
            '+     "qty": 0,',
            "+   },",
            "+ ]",
            "",
            f"  at Object.<anonymous> (src/hooks/useCart.test.ts:{at}:32)",
        ),
    )
    cmd = "cd web && npx jest src/hooks/useCart.test.ts"
    s.command(cmd, o.jest([failing], 1.31), 1, note="Running the hook's tests")
    s.read("web/src/hooks/useCart.ts")
    s.edit(
        "web/src/hooks/useCart.ts",
        "    setItems((xs) => xs.map((x) => (x.id === id ? { ...x, qty } : x)));",
        "    setItems((xs) => xs.map((x) => (x.id === id ? { ...x, qty } : x)).filter((x) => x.qty >= 0));",
        note="Dropping items at zero",
    )
    s.command(cmd, o.jest([failing], 1.2), 1)
    s.command(cmd + " --verbose", o.jest([failing], 1.25), 1)
    h.target(
        "web/src/hooks/useCart.test.ts",
        "src/hooks/useCart.test.ts",
        "useCart.test.ts",
        "web/src/hooks/useCart.ts",
        "hooks/useCart.ts",
        "useCart.ts",
        "useCart",
        why="the request, failed three times, and the session ended on the failure",
    )


@scenario("tsc_api_server")
def tsc_api_server(h: Builder) -> None:
    """Codex 0.58: `cd api && npx tsc --noEmit` failed twice on api/src/server.ts (web type-checks); the session
    ended on the failure."""
    h.tree(WEB)
    s: Session = h.claude(5.1)
    s.ask("turn on strict mode in api/tsconfig.json like web has")
    s.read("api/tsconfig.json")
    s.say('api/tsconfig.json already has `"strict": true`; nothing to change.')
    s = h.codex(3.6, legacy=True)
    s.ask("api build fails after the strict mode change")
    line = line_of("api/src/server.ts", "findOrder(id)")
    err = [
        (
            "src/server.ts",
            line,
            35,
            "TS2345",
            "Argument of type 'string | null' is not assignable to parameter of type 'string'.\n  Type 'null' is "
            "not assignable to type 'string'.",
        )
    ]
    s.command("cd web && npx tsc --noEmit", "", 0, note="Checking web first")
    s.command("cd api && npx tsc --noEmit", o.tsc(err), 2)
    s.read("api/src/db.ts")
    s.command("cd api && npx tsc --noEmit --pretty false", o.tsc(err), 2)
    h.target(
        "api/src/server.ts",
        "src/server.ts",
        "server.ts",
        why="the only type error in api, still failing when the session ended",
    )


# ------------------------------------------------------------------------------------------- go


RATELIMIT_LOG = (
    "--- FAIL: TestLimiterBurst (0.00s)",
    f"    limiter_test.go:{line_of('pkg/ratelimit/limiter_test.go', 't.Errorf')}: Allow() after burst = true, "
    "want false",
)


@scenario("go_ratelimit", fast=True)
def go_ratelimit(h: Builder) -> None:
    """Codex 0.58: `go test ./pkg/ratelimit/...` failed twice and `go test ./...` once; the session ended on the
    failure. Before it: a green run of the same tests, and `terraform plan` failing in another directory."""
    h.tree(GO)
    other = h.elsewhere("edge-deploy", {"main.tf": 'module "edge" {\n  source = "./modules/edge"\n}\n'})
    s: Session = h.claude(6.2)
    s.ask("switch the limiter's refill to a continuous rate instead of once per second")
    s.read("pkg/ratelimit/limiter.go")
    green = o.go_test(GO_MODULE, [GoPkg("pkg/ratelimit")])
    s.command("go test ./pkg/ratelimit/...", green, 0, desc="Run the limiter tests")
    s.say("The refill is already continuous (`tokens += elapsed * Rate`); tests pass.")
    n = h.codex(2.0, where=other)
    n.ask("terraform plan fails with a provider error")
    for _ in range(3):
        n.command("terraform plan", "Error: Failed to query available provider packages", 1)
    n.say("The provider registry is unreachable from here; run `terraform init` where it is reachable.")
    s = h.codex(3.4, legacy=True)
    s.ask("the rate limiter lets too many requests through after a burst; go test is red since the refill change")
    one = o.go_test(GO_MODULE, [GoPkg("pkg/ratelimit", "FAIL", RATELIMIT_LOG)])
    s.command("go test ./pkg/ratelimit/...", one, 1, note="Running the limiter tests")
    s.read("pkg/ratelimit/limiter.go")
    s.edit(
        "pkg/ratelimit/limiter.go",
        "\tl.last = now\n",
        "\tl.last = now\n\tif l.tokens > float64(l.Burst+1) {\n\t\tl.tokens = float64(l.Burst + 1)\n\t}\n",
        note="Capping the bucket",
    )
    s.command("go test ./pkg/ratelimit/...", one, 1)
    whole = o.go_test(
        GO_MODULE,
        [
            GoPkg("cmd/edge", "none"),
            GoPkg("internal/store", "none"),
            GoPkg("pkg/auth"),
            GoPkg("pkg/config"),
            GoPkg("pkg/ratelimit", "FAIL", RATELIMIT_LOG),
        ],
    )
    s.command("go test ./...", whole, 1)
    h.target(
        "pkg/ratelimit",
        "pkg/ratelimit/limiter.go",
        "ratelimit/limiter.go",
        "limiter.go",
        "pkg/ratelimit/limiter_test.go",
        "limiter_test.go",
        "TestLimiterBurst",
        "ratelimit",
        why="the person's request, still failing when the session ended",
    )


@scenario("go_two_packages")
def go_two_packages(h: Builder) -> None:
    """`go test ./...` failed in pkg/config only (pkg/auth and pkg/ratelimit pass); the agent asked about '-1'."""
    h.tree(GO)
    s: Session = h.codex(3.9)
    s.ask("where do we read the proxy timeout?")
    s.read("pkg/config/config.go")
    s.read("pkg/config/duration.go")
    s.say("`Config.Timeout` is a string parsed by `ParseDuration` (pkg/config/duration.go): Go durations or seconds.")
    s = h.claude(1.0)
    s.ask("go test ./... fails on CI, find out why")
    log = (
        "--- FAIL: TestParseDuration (0.00s)",
        "    --- FAIL: TestParseDuration/negative (0.00s)",
        f"        duration_test.go:{line_of('pkg/config/duration_test.go', 'want an error')}: "
        'ParseDuration("-5") err = nil, want an error',
    )
    whole = o.go_test(
        GO_MODULE,
        [
            GoPkg("cmd/edge", "none"),
            GoPkg("internal/store", "none"),
            GoPkg("pkg/auth"),
            GoPkg("pkg/config", "FAIL", log),
            GoPkg("pkg/ratelimit"),
        ],
    )
    s.command("go test ./...", whole, 1, desc="Run all Go tests")
    s.read("pkg/config/duration.go")
    verbose = "\n".join(
        [
            "=== RUN   TestParseDuration",
            "=== RUN   TestParseDuration/seconds",
            "=== RUN   TestParseDuration/negative",
            *log[1:],
            "    --- PASS: TestParseDuration/seconds (0.00s)",
            log[0],
            o.go_test(GO_MODULE, [GoPkg("pkg/config", "FAIL")]),
        ]
    )
    s.command("go test ./pkg/config/ -run TestParseDuration -v", verbose, 1, desc="Run the failing test verbosely")
    s.say(
        'Only pkg/config fails: `ParseDuration("-5")` returns -5s where the test wants an error. Rejecting '
        "negatives would also reject '-1', which edge.yaml uses for 'no timeout' — should '-1' stay allowed?"
    )
    h.target(
        "pkg/config",
        "pkg/config/duration.go",
        "config/duration.go",
        "duration.go",
        "pkg/config/duration_test.go",
        "duration_test.go",
        "TestParseDuration",
        why="the only failing package, the open question is about it",
    )


@scenario("go_build_store")
def go_build_store(h: Builder) -> None:
    """`go build ./...` failed twice in internal/store/postgres.go during a pgx upgrade; the agent could not
    fetch the module and stopped."""
    h.tree(GO)
    s = h.claude(4.0)
    s.ask("finish the pgx v5 upgrade in internal/store")
    s.read("internal/store/postgres.go")
    line = line_of("internal/store/postgres.go", "sql.ErrNoRow")
    first = o.go_build(
        f"{GO_MODULE}/internal/store", [f"internal/store/postgres.go:{line}:59: undefined: sql.ErrNoRow"]
    )
    s.command("go build ./...", first, 1, desc="Build")
    s.edit("internal/store/postgres.go", "errors.Is(err, sql.ErrNoRow)", "errors.Is(err, pgx.ErrNoRows)")
    second = o.go_build(
        f"{GO_MODULE}/internal/store",
        [
            f'internal/store/postgres.go:{line_of("internal/store/postgres.go", "database/sql")}:2: "database/sql" '
            "imported and not used",
            f"internal/store/postgres.go:{line}:48: undefined: pgx",
        ],
    )
    s.command("go build ./...", second, 1, desc="Build again")
    s.command(
        "go mod tidy",
        'go: github.com/jackc/pgx/v5@v5.7.1: Get "https://proxy.golang.org/...": '
        "dial tcp: lookup proxy.golang.org: no such host",
        1,
    )
    s.say(
        "internal/store/postgres.go still does not build: it needs the `github.com/jackc/pgx/v5` import instead "
        "of database/sql, and go.sum has no entry for it; `go mod tidy` cannot reach the module proxy from here."
    )
    h.target(
        "internal/store/postgres.go",
        "store/postgres.go",
        "postgres.go",
        "internal/store",
        why="the build breaks in it; the upgrade the person asked for is not finished",
    )


# ------------------------------------------------------------------------------------------- rust


@scenario("cargo_tokenizer")
def cargo_tokenizer(h: Builder) -> None:
    """`cargo test -p tokenizer` failed three times on tests::roundtrip_unicode; the agent stopped."""
    h.tree(RUST)
    s: Session = h.codex(4.7)
    s.ask("run clippy on the workspace")
    s.command(
        "cargo clippy --workspace",
        "    Checking tokenizer v0.4.1\n    Checking gateway v0.2.0\n"
        "    Finished `dev` profile [unoptimized + debuginfo] target(s) in 3.02s",
        0,
    )
    s.say("Clippy is clean.")
    s = h.claude(2.6)
    s.ask("cargo test is failing in the tokenizer crate on accented words")
    line = line_of("crates/tokenizer/src/lib.rs", 'tokenize("café")')
    run = o.cargo_test(
        "tokenizer",
        "0.4.1",
        str(h.repo / "crates/tokenizer"),
        ["tests::roundtrip_ascii"],
        "tests::roundtrip_unicode",
        [
            f"thread 'tests::roundtrip_unicode' panicked at crates/tokenizer/src/lib.rs:{line}:9:",
            "assertion `left == right` failed",
            '  left: ["caf"]',
            ' right: ["café"]',
        ],
    )
    s.command("cargo test -p tokenizer", run, 101, desc="Run the tokenizer tests")
    s.read("crates/tokenizer/src/lib.rs")
    s.edit("crates/tokenizer/src/lib.rs", ".map(|t| t.to_lowercase())", ".map(str::to_lowercase)")
    s.command("cargo test -p tokenizer", run, 101, desc="Run the tokenizer tests again")
    s.command("cargo test -p tokenizer -- --nocapture roundtrip_unicode", run, 101, desc="Run the failing test alone")
    s.say(
        "Not fixed: the split uses `is_ascii_alphanumeric`, so 'é' is a separator. Splitting on Unicode word "
        "boundaries needs the `unicode-segmentation` crate; I stopped before adding a dependency."
    )
    h.target(
        "crates/tokenizer/src/lib.rs",
        "tokenizer/src/lib.rs",
        "crates/tokenizer",
        "tests::roundtrip_unicode",
        "roundtrip_unicode",
        "tokenizer",
        why="the person's request, failed three times and left failing",
    )


@scenario("cargo_build_config")
def cargo_build_config(h: Builder) -> None:
    """Codex 0.58: `cargo build -p gateway` failed twice (E0308 in crates/gateway/src/config.rs); the session
    ended on the failure."""
    h.tree(RUST)
    s = h.codex(1.3, legacy=True)
    s.ask("add a request timeout to the gateway config")
    s.read("crates/gateway/src/config.rs")
    line = line_of("crates/gateway/src/config.rs", "let _t: u32")
    error = [
        "error[E0308]: mismatched types",
        f"  --> crates/gateway/src/config.rs:{line}:19",
        "   |",
        f"{line} |     let _t: u32 = cfg.timeout_secs;",
        "   |             ---   ^^^^^^^^^^^^^^^^ expected `u32`, found `u64`",
        "   |             |",
        "   |             expected due to this",
    ]
    run = o.cargo_build("gateway", "0.2.0", str(h.repo / "crates/gateway"), [error])
    s.command("cargo build -p gateway", run, 101)
    s.edit(
        "crates/gateway/src/config.rs",
        "    pub timeout_secs: u64,",
        "    pub timeout_secs: u64,\n    #[serde(default)]\n    pub request_timeout_secs: u64,",
        note="Adding the request timeout",
    )
    s.command("cargo build -p gateway", run, 101)
    h.target(
        "crates/gateway/src/config.rs",
        "gateway/src/config.rs",
        "config.rs",
        why="the build breaks in it, and the request is about it",
    )


# The held-out histories (written after the heuristic was tuned on the ones above) register themselves.
from benchmarks.decide import held_out as _held_out  # noqa: E402, F401
