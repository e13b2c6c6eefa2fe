"""The held-out histories: ten stories written after the decision heuristic was tuned on the others, to measure
it on situations it was not shaped by (a traceback into the module under test, a long session whose middle
request was left open, a pnpm workspace, parametrized pytest ids, a flaky test, `make check`, Django's test
runner, a panic in a Rust workspace's root package, Gradle, a request naming a long path). They are in the
`all` subset only; `scenarios.py` imports this module to register them."""

from __future__ import annotations

from benchmarks.decide import outputs as o
from benchmarks.decide.builder import Builder
from benchmarks.decide.outputs import JestSuite, PyFail, PyFile, Pytest
from benchmarks.decide.scenarios import WHOLE_SUITE, scenario
from benchmarks.decide.trees import CLIENT, DOTFILES, PYTHON, SERVICES, Tree, merge
from benchmarks.decide.writers import Session


def _line(tree: Tree, path: str, snippet: str) -> int:
    for i, line in enumerate(tree[path].splitlines(), 1):
        if snippet in line:
            return i
    raise KeyError(f"{snippet!r} not in {path}")


# ------------------------------------------------------------------------------------------- python

RATES_TEST: Tree = {
    "tests/test_rates.py": """from fx.rates import fetch_rates


class FakeResponse:
    def raise_for_status(self):
        pass

    def json(self):
        return {"rates": [{"currency": "USD", "value": "1.08"}, {"currency": "GBP", "value": "0.86"}]}


class FakeClient:
    def get(self, url):
        return FakeResponse()


def test_fetch_rates_new_feed():
    assert fetch_rates(FakeClient()) == {"USD": 1.08, "GBP": 0.86}
""",
}
RATES_TREE = merge(PYTHON, RATES_TEST)


@scenario("traceback_rates")
def traceback_rates(h: Builder) -> None:
    """`python3 -m pytest tests/test_rates.py -q` failed twice with a KeyError raised in src/fx/rates.py (the
    traceback's inner frame); the agent asked whether both feed formats must be read. Before it: a green run of
    the suite, a session in dotfiles."""
    h.tree(RATES_TREE)
    dotfiles = h.elsewhere("dotfiles", DOTFILES)
    s: Session = h.codex(4.2)
    s.ask("run the whole suite, I want to know where we are before the release")
    green = Pytest((*WHOLE_SUITE, PyFile("tests/test_rates.py", "."), PyFile("tests/test_tax.py", "..")), (), 0.52)
    s.command("python -m pytest -q", str(green), 0, note="Running the suite")
    s.say("All 14 tests pass.")
    d = h.claude(2.0, where=dotfiles)
    d.ask("set the editor to nvim")
    d.edit("zshrc", "export EDITOR=vim", "export EDITOR=nvim")
    d.say("Done: EDITOR is nvim.")
    s = h.claude(0.7)
    s.ask(
        "the central bank changed the daily feed: each row now has 'value' instead of 'rate'. I updated the fake "
        "in the rates test to the new shape; make it pass"
    )
    at = _line(RATES_TREE, "src/fx/rates.py", 'row["rate"]')

    def fail(key: str) -> PyFail:
        return PyFail(
            "tests/test_rates.py",
            "test_fetch_rates_new_feed",
            ("def test_fetch_rates_new_feed():", '    assert fetch_rates(FakeClient()) == {"USD": 1.08, "GBP": 0.86}'),
            (f"KeyError: '{key}'",),
            _line(RATES_TREE, "tests/test_rates.py", "fetch_rates(FakeClient())"),
            "KeyError",
            (
                "client = <tests.test_rates.FakeClient object at 0x7f3a2c1d9e50>",
                "",
                "    def fetch_rates(client: httpx.Client | None = None) -> dict[str, float]:",
                "        client = client or httpx.Client()",
                "        response = client.get(FEED)",
                "        response.raise_for_status()",
                '>       return {row["currency"]: float(row["rate"]) for row in response.json()["rates"]}',
                f"E       KeyError: '{key}'",
            ),
            f"src/fx/rates.py:{at}",
        )

    run = Pytest([PyFile("tests/test_rates.py", "F")], [fail("rate")], 0.05)
    s.command("python3 -m pytest tests/test_rates.py -q", str(run), 1, desc="Run the rates test")
    s.read("src/fx/rates.py")
    s.command("python3 -m pytest tests/test_rates.py -q --tb=long", str(run), 1, desc="Run it with long tracebacks")
    s.say(
        "The KeyError comes from `fetch_rates`, which still reads `row[\"rate\"]`. Switching to 'value' breaks "
        "the old feed, which the nightly backfill still replays: should `fetch_rates` read both keys during the "
        "transition, or only the new one?"
    )
    h.target(
        "src/fx/rates.py",
        "fx/rates.py",
        "rates.py",
        "fx.rates",
        "tests/test_rates.py",
        "test_rates.py",
        "test_rates",
        "test_fetch_rates_new_feed",
        why="the test fails in fetch_rates (the traceback's inner frame); the fix is in src/fx/rates.py",
    )


@scenario("middle_request_loader")
def middle_request_loader(h: Builder) -> None:
    """One long Codex session with four requests: the Makefile target was renamed, then a request to batch the
    commits in src/importer/loader.py got a plan and a question nobody answered, then two small requests were
    done."""
    h.tree(PYTHON)
    s = h.codex(1.4)
    s.ask("rename the Makefile's lint target to check, CI calls `make check`")
    s.read("Makefile")
    s.edit("Makefile", "lint:\n", "check:\n")
    s.command("make -n check", "ruff check src tests\nmypy", 0)
    s.say("Renamed `lint` to `check` in the Makefile; `make -n check` shows ruff and mypy.")
    s.ask(
        "src/importer/loader.py commits after every row, which is why a statement import takes minutes. Batch the "
        "commits (one per 500 rows) and drop the sleep, the old bank API limit is gone"
    )
    s.read("src/importer/loader.py", note="Reading the loader")
    s.read("tests/test_importer.py")
    s.command(
        "rg -n 'insert_statement_line|commit' src tests",
        (
            "src/importer/loader.py:10:            db.insert_statement_line(row)\n"
            "src/importer/loader.py:11:            db.commit()"
        ),
        0,
    )
    s.say(
        "Plan: count rows, commit every 500 and once at the end, remove the `time.sleep`. One question first: if "
        "a row fails halfway through a batch, should the whole file roll back or only that batch? The current "
        "per-row commits keep every row before the bad one."
    )
    s.ask("which python version do we require?")
    s.read("pyproject.toml")
    s.say('Python 3.11 or newer (`requires-python = ">=3.11"` in pyproject.toml).')
    s.ask("bump the version to 0.9.3")
    s.edit("pyproject.toml", 'version = "0.9.2"', 'version = "0.9.3"')
    s.say("Bumped to 0.9.3.")
    h.target(
        "src/importer/loader.py",
        "importer/loader.py",
        "loader.py",
        "importer.loader",
        why="the only request left open: planned, waiting on an answer; the requests before and after it are done",
    )


AMOUNTS_TEST: Tree = {
    "tests/test_amounts.py": """from decimal import Decimal

import pytest

from parser.numbers import parse_amount


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,200.50", Decimal("1200.50")),
        ("-12.50", Decimal("-12.50")),
        ("(12.50)", Decimal("-12.50")),
    ],
    ids=["thousands", "negative", "accounting-negative"],
)
def test_parse_amount(text, expected):
    assert parse_amount(text) == expected
""",
}
AMOUNTS_TREE = merge(PYTHON, AMOUNTS_TEST)


@scenario("pytest_param_ids")
def pytest_param_ids(h: Builder) -> None:
    """Codex 0.58: `python -m pytest tests/test_amounts.py -q` failed twice on parametrized cases
    (`test_parse_amount[negative]`, `test_parse_amount[accounting-negative]`); one case is left failing."""
    h.tree(AMOUNTS_TREE)
    s = h.codex(2.2, legacy=True)
    s.ask("bank exports write negative amounts as -12.50 or (12.50); make parse_amount accept both, I added the cases")
    at = _line(AMOUNTS_TREE, "src/parser/numbers.py", "raise ValueError")
    line = _line(AMOUNTS_TREE, "tests/test_amounts.py", "assert parse_amount(text)")

    def fail(case: str, text: str) -> PyFail:
        return PyFail(
            "tests/test_amounts.py",
            f"test_parse_amount[{case}]",
            ("def test_parse_amount(text, expected):", "    assert parse_amount(text) == expected"),
            (f"ValueError: not an amount: '{text}'",),
            line,
            "ValueError",
            (
                f"text = '{text}'",
                "",
                "    def parse_amount(text: str) -> Decimal:",
                "        cleaned = _strip(text)",
                '        if not cleaned.replace(".", "", 1).isdigit():',
                '>           raise ValueError(f"not an amount: {text!r}")',
                f"E           ValueError: not an amount: '{text}'",
            ),
            f"src/parser/numbers.py:{at}",
        )

    both = Pytest([PyFile("tests/test_amounts.py", ".FF")], [fail("negative", "-12.50"), fail("accounting-negative",
                  "(12.50)")], 0.04)  # fmt: skip
    s.command("python -m pytest tests/test_amounts.py -q", str(both), 1)
    s.read("src/parser/numbers.py")
    s.edit(
        "src/parser/numbers.py",
        '    if not cleaned.replace(".", "", 1).isdigit():',
        '    if not cleaned.lstrip("-").replace(".", "", 1).isdigit():',
        note="Allowing a leading minus",
    )
    one = Pytest([PyFile("tests/test_amounts.py", "..F")], [fail("accounting-negative", "(12.50)")], 0.04)
    s.command("python -m pytest tests/test_amounts.py -q", str(one), 1)
    s.say(
        "`-12.50` parses now. `(12.50)` still fails: parentheses also appear around reference numbers in the "
        "memo column of the same exports, so reading them as a sign everywhere seems risky. Should only the "
        "amount column accept them?"
    )
    h.target(
        "tests/test_amounts.py",
        "test_amounts.py",
        "test_amounts",
        "test_parse_amount",
        "src/parser/numbers.py",
        "parser/numbers.py",
        "parser.numbers",
        why="the request, its parametrized test still fails on one case and the agent asked how to go on",
    )


FLAKY_RETRY: Tree = {
    "src/utils/retry.py": '''"""Retries with exponential backoff for outgoing HTTP calls."""

import random
import time

MAX_DELAY = 30.0


def backoff(attempt: int, base: float = 0.5) -> float:
    return min(MAX_DELAY, base * 2**attempt + random.uniform(-base, base))


def retry(call, attempts: int = 5):
    for attempt in range(attempts):
        try:
            return call()
        except ConnectionError:
            time.sleep(backoff(attempt))
    return call()
''',
    "tests/test_retry.py": """from utils.retry import MAX_DELAY, backoff


def test_backoff_grows_each_attempt():
    assert backoff(1) < backoff(2)


def test_backoff_caps_at_max():
    assert backoff(10) <= MAX_DELAY
""",
}
FLAKY_TREE = merge(PYTHON, FLAKY_RETRY)


@scenario("flaky_retry")
def flaky_retry(h: Builder) -> None:
    """`python3 -m pytest tests/test_retry.py -q` alternated: failed, passed, failed, passed (the jitter can make
    attempt 2 shorter than attempt 1); the agent explained the flake and asked which fix, changing nothing."""
    h.tree(FLAKY_TREE)
    client = h.elsewhere("repo-client", CLIENT)
    n = h.codex(3.0, where=client)
    n.ask("run the client tests")
    n.command("python -m pytest -q", str(Pytest([PyFile("tests/test_client.py", ".")], (), 0.02)), 0)
    n.say("1 passed.")
    s = h.claude(0.9)
    s.ask("CI goes red about one run in three since the jitter change, and a rerun makes it green. find out why")
    line = _line(FLAKY_TREE, "tests/test_retry.py", "backoff(1) < backoff(2)")

    def red(a: str, b: str) -> str:
        f = PyFail(
            "tests/test_retry.py",
            "test_backoff_grows_each_attempt",
            ("def test_backoff_grows_each_attempt():", "    assert backoff(1) < backoff(2)"),
            (f"assert {a} < {b}", f" +  where {a} = backoff(1)", f" +  and   {b} = backoff(2)"),
            line,
        )
        return str(Pytest([PyFile("tests/test_retry.py", "F.")], [f], 0.03))

    green = str(Pytest([PyFile("tests/test_retry.py", "..")], (), 0.03))
    cmd = "python3 -m pytest tests/test_retry.py -q"
    s.command(cmd, red("1.4113", "1.2871"), 1, desc="Run the retry tests")
    s.command(cmd, green, 0, desc="Run the retry tests again")
    s.read("src/utils/retry.py")
    s.command(cmd, red("1.3302", "1.0968"), 1, desc="Run the retry tests a third time")
    s.command(cmd, green, 0, desc="Run the retry tests a fourth time")
    s.say(
        "It is flaky, not fixed: `backoff` adds jitter in [-base, +base], so `backoff(1)` can be up to 1.5 s and "
        "`backoff(2)` as little as 1.5 s; `test_backoff_grows_each_attempt` fails whenever they cross (2 of my 4 "
        "runs). Either the jitter goes up only (`uniform(0, base)`) or the test compares without jitter. I "
        "changed nothing: which do you want?"
    )
    h.target(
        "tests/test_retry.py",
        "test_retry.py",
        "test_retry",
        "test_backoff_grows_each_attempt",
        "src/utils/retry.py",
        "utils/retry.py",
        "retry.py",
        "utils.retry",
        why="the flaky test the person asked about; it passes only on some runs and nothing was changed",
    )


CHECK_TREE = merge(
    PYTHON,
    {"Makefile": "test:\n\tpython3 -m pytest -q\n\ncheck:\n\truff check src tests\n\tmypy\n\tpython3 -m pytest -q\n"},
)


@scenario("make_check_export")
def make_check_export(h: Builder) -> None:
    """`make check` (ruff, mypy, pytest) was green, then after the agent added `to_csv` to
    src/reports/export.py it failed twice on mypy errors in that file; the session ended on the failure."""
    h.tree(CHECK_TREE)
    s: Session = h.claude(3.3)
    s.ask("is the tree clean? run make check")
    suite = str(Pytest((*WHOLE_SUITE, PyFile("tests/test_tax.py", "..")), (), 0.44))
    ok = f"ruff check src tests\nAll checks passed!\nmypy\nSuccess: no issues found in 16 source files\n" \
         f"python3 -m pytest -q\n{suite}"  # fmt: skip
    s.command("make check", ok, 0, desc="Run the checks")
    s.say("`make check` passes: ruff, mypy and the 13 tests.")
    s = h.codex(0.6)
    s.ask("add to_csv(rows, columns) next to to_json in the exporter, then make sure make check still passes")
    s.read("src/reports/export.py")
    s.edit(
        "src/reports/export.py",
        "    return json.dumps(rows, default=str)\n",
        "    return json.dumps(rows, default=str)\n\n\ndef to_csv(rows, columns):\n    import csv\n    import io\n\n"
        '    out = io.StringIO()\n    writer = csv.DictWriter(out, columns, extrasaction="ignore")\n'
        "    writer.writeheader()\n    writer.writerows(rows)\n    return out.getvalue()\n",
        note="Adding to_csv",
    )
    fn = 10
    first = o.mypy([("src/reports/export.py", fn, "Function is missing a type annotation", "no-untyped-def")], 16)
    out1 = f"ruff check src tests\nAll checks passed!\nmypy\n{first}\nmake: *** [Makefile:6: check] Error 1"
    s.command("make check", out1, 2, note="Running the checks")
    s.edit(
        "src/reports/export.py",
        "def to_csv(rows, columns):",
        "def to_csv(rows: list[dict[str, object]], columns: list[str]) -> str:",
        note="Annotating to_csv",
    )
    second = o.mypy(
        [
            (
                "src/reports/export.py",
                fn + 7,
                'Argument 1 to "writerows" of "DictWriter" has incompatible type "list[dict[str, object]]"; '
                'expected "Iterable[Mapping[str, Any]]"',
                "arg-type",
            )
        ],
        16,
    )
    out2 = f"ruff check src tests\nAll checks passed!\nmypy\n{second}\nmake: *** [Makefile:6: check] Error 1"
    s.command("make check", out2, 2)
    h.target(
        "src/reports/export.py",
        "reports/export.py",
        "export.py",
        "reports.export",
        why="make check fails on mypy errors in it, from the change just made; the session ended there",
    )


# ------------------------------------------------------------------------------------------- django

DJANGO: Tree = {
    "manage.py": """#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
""",
    "config/__init__.py": "",
    "config/settings.py": """SECRET_KEY = "dev"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "shop", "accounts"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
USE_TZ = True
""",
    "shop/__init__.py": "",
    "shop/models.py": """from decimal import Decimal

from django.db import models


class Order(models.Model):
    subtotal = models.DecimalField(max_digits=10, decimal_places=2)
    discount_percent = models.PositiveSmallIntegerField(default=0)
    shipping = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("0"))
""",
    "shop/pricing.py": '''"""Order totals: discount on the subtotal, shipping added after."""

from decimal import Decimal


def order_total(order):
    gross = order.subtotal + order.shipping
    return gross - gross * Decimal(order.discount_percent) / 100
''',
    "shop/tests.py": """from decimal import Decimal

from django.test import TestCase

from shop.models import Order
from shop.pricing import order_total


class OrderTotalTests(TestCase):
    def test_total_without_discount(self):
        order = Order(subtotal=Decimal("80.00"), shipping=Decimal("5.00"))
        self.assertEqual(order_total(order), Decimal("85.00"))

    def test_total_with_discount(self):
        order = Order(subtotal=Decimal("80.00"), discount_percent=10, shipping=Decimal("5.00"))
        self.assertEqual(order_total(order), Decimal("77.00"))
""",
    "accounts/__init__.py": "",
    "accounts/tests.py": """from django.test import TestCase


class SignupTests(TestCase):
    def test_signup_page(self):
        self.assertEqual(self.client.get("/signup/").status_code, 200)
""",
}


@scenario("django_order_total", since_days=14)
def django_order_total(h: Builder) -> None:
    """`python manage.py test shop.tests.OrderTotalTests` failed twice and `python manage.py test shop` once (the
    traceback names the absolute path of shop/tests.py); the agent asked about shipping. 25 days ago, outside
    the window, accounts' tests failed; mypy failed in repo-client this week."""
    h.tree(DJANGO)
    client = h.elsewhere("repo-client", CLIENT)
    old = h.codex(25.0)
    old.ask("the signup page 404s in tests")
    signup = "\n".join(
        [
            "Creating test database for alias 'default'...",
            "System check identified no issues (0 silenced).",
            "F",
            "=" * 70,
            "FAIL: test_signup_page (accounts.tests.SignupTests.test_signup_page)",
            "-" * 70,
            "Traceback (most recent call last):",
            f'  File "{h.repo}/accounts/tests.py", line 6, in test_signup_page',
            '    self.assertEqual(self.client.get("/signup/").status_code, 200)',
            "AssertionError: 404 != 200",
            "",
            "-" * 70,
            "Ran 1 test in 0.021s",
            "",
            "FAILED (failures=1)",
            "Destroying test database for alias 'default'...",
        ]
    )
    for _ in range(3):
        old.command("python manage.py test accounts", signup, 1)
    old.say("There is no urls.py routing /signup/ yet; the test was written ahead of the view.")
    n = h.claude(1.5, where=client)
    n.ask("type-check the client")
    for _ in range(2):
        err = [("client/http.py", 1, "Function is missing a type annotation", "no-untyped-def")]
        n.command("mypy client", o.mypy(err, 1), 1)
    n.say("`get` needs annotations.")
    s = h.claude(0.8)
    s.ask("the 10% discount is applied to shipping too; customers get charged 76.50 instead of 77.00")
    line = _line(DJANGO, "shop/tests.py", 'Decimal("77.00")')

    def run(ran: int, marks: str) -> str:
        return "\n".join(
            [
                "Creating test database for alias 'default'...",
                "System check identified no issues (0 silenced).",
                marks,
                "=" * 70,
                "FAIL: test_total_with_discount (shop.tests.OrderTotalTests.test_total_with_discount)",
                "-" * 70,
                "Traceback (most recent call last):",
                f'  File "{h.repo}/shop/tests.py", line {line}, in test_total_with_discount',
                '    self.assertEqual(order_total(order), Decimal("77.00"))',
                "AssertionError: Decimal('76.50') != Decimal('77.00')",
                "",
                "-" * 70,
                f"Ran {ran} tests in 0.01{ran}s",
                "",
                "FAILED (failures=1)",
                "Destroying test database for alias 'default'...",
            ]
        )

    s.command("python manage.py test shop.tests.OrderTotalTests", run(2, ".F"), 1, desc="Run the order tests")
    s.read("shop/pricing.py")
    s.command("python manage.py test shop", run(2, ".F"), 1, desc="Run the shop app's tests")
    s.command("python manage.py test shop.tests.OrderTotalTests -v 2", run(2, ".F"), 1, desc="Verbose")
    s.say(
        "The discount is taken off subtotal + shipping in `order_total`. The fix is to discount the subtotal only, "
        "but the free-shipping promo relies on today's behaviour: should a 100% discount still cover shipping?"
    )
    h.target(
        "shop/tests.py",
        "shop.tests",
        "shop.tests.OrderTotalTests",
        "OrderTotalTests",
        "test_total_with_discount",
        "shop/pricing.py",
        "pricing.py",
        "shop.pricing",
        why="the person's bug report, its test failed three times and is left failing; accounts is old and known",
    )


# ------------------------------------------------------------------------------------------- node workspaces

PNPM: Tree = {
    "package.json": '{\n  "name": "acme",\n  "private": true,\n  "packageManager": "pnpm@9.12.3"\n}\n',
    "pnpm-workspace.yaml": "packages:\n  - packages/*\n",
    "packages/ui/package.json": '{\n  "name": "@acme/ui",\n  "version": "0.4.0",\n  "scripts": {"test": "jest"}\n}\n',
    "packages/ui/src/Button.tsx": """import type { ReactNode } from "react";

export function Button({ disabled, children }: { disabled?: boolean; children: ReactNode }) {
  return <button className={disabled ? "btn btn-muted" : "btn"}>{children}</button>;
}
""",
    "packages/ui/src/Button.test.tsx": """import { render, screen } from "@testing-library/react";
import { Button } from "./Button";

test("renders its label", () => {
  render(<Button>Pay</Button>);
  expect(screen.getByRole("button")).toHaveTextContent("Pay");
});

test("a disabled button cannot be clicked", () => {
  render(<Button disabled>Pay</Button>);
  expect(screen.getByRole("button")).toBeDisabled();
});
""",
    "packages/api-client/package.json": (
        '{\n  "name": "@acme/api-client",\n  "version": "0.2.0",\n  "scripts": {"test": "jest"}\n}\n'
    ),
    "packages/api-client/src/client.ts": """export async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${res.status} ${url}`);
  return (await res.json()) as T;
}
""",
    "packages/api-client/src/client.test.ts": """import { getJson } from "./client";

test("exports getJson", () => {
  expect(typeof getJson).toBe("function");
});
""",
}


@scenario("pnpm_filter_button")
def pnpm_filter_button(h: Builder) -> None:
    """A pnpm workspace: `npm --prefix packages/api-client test` passed; `pnpm --filter @acme/ui test` failed
    twice (jest: FAIL src/Button.test.tsx, relative to packages/ui) and the agent asked about the styling."""
    h.tree(PNPM)
    s: Session = h.codex(2.8)
    s.ask("check the api client tests still pass with node 22")
    ok = (
        o.npm_header("@acme/api-client", "0.2.0", "test", "jest")
        + "\n"
        + o.jest([JestSuite("src/client.test.ts", "", (("exports getJson", True, 2),))], 0.71)
    )
    s.command("node --version", "v22.11.0", 0)
    s.command("npm --prefix packages/api-client test", ok, 0, note="Running the client tests")
    s.say("On Node 22.11.0 the api-client tests pass.")
    s = h.claude(0.9)
    s.ask("disabled buttons can be clicked again since the design tokens update, fix it in the ui package")
    at = _line(PNPM, "packages/ui/src/Button.test.tsx", "toBeDisabled()")
    failure = (
        "expect(element).toBeDisabled()",
        "",
        "Received element is not disabled:",
        '  <button class="btn btn-muted" />',
        "",
        f"  at Object.<anonymous> (src/Button.test.tsx:{at}:38)",
    )
    suite = JestSuite(
        "src/Button.test.tsx", "", (("renders its label", True, 18), ("a disabled button cannot be clicked", False, 5)),
        failure,
    )  # fmt: skip
    pkg = h.repo / "packages/ui"
    out = (
        f"\n> @acme/ui@0.4.0 test {pkg}\n> jest\n\n"
        + o.jest([suite], 1.84)
        + f"\n{pkg}:\n ERR_PNPM_RECURSIVE_RUN_FIRST_FAIL  @acme/ui@0.4.0 test: `jest`\nExit status 1"
    )
    s.command("pnpm --filter @acme/ui test", out, 1, desc="Run the ui package's tests")
    s.read("packages/ui/src/Button.tsx")
    s.command("pnpm --filter @acme/ui test -- --verbose", out, 1, desc="Run them verbosely")
    s.say(
        "The `disabled` prop only picks a class now: the `disabled` attribute itself was dropped in the tokens "
        "update, so the button stays clickable. Passing `disabled` through fixes it, but `btn-muted` then "
        "doubles the greyed style: keep the class or drop it?"
    )
    h.target(
        "packages/ui/src/Button.test.tsx",
        "src/Button.test.tsx",
        "Button.test.tsx",
        "packages/ui/src/Button.tsx",
        "src/Button.tsx",
        "Button.tsx",
        why="the person's request, its test failed twice in the ui package and is left failing",
    )


# ------------------------------------------------------------------------------------------- rust

INDEXER: Tree = {
    "Cargo.toml": """[package]
name = "indexer"
version = "0.1.0"
edition = "2021"

[dependencies]
tokenizer = { path = "crates/tokenizer" }

[workspace]
members = ["crates/tokenizer"]
""",
    "src/lib.rs": """//! Assigns documents to index shards.

/// The shard a key goes to, out of `shards`.
pub fn shard_for(key: &str, shards: usize) -> usize {
    let hash = key
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    // A config with `shards = 0` must be rejected before it gets here.
    let _ = tokenizer::tokenize(key);
    hash % shards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_shard() {
        assert_eq!(shard_for("doc-1", 8), shard_for("doc-1", 8));
    }

    #[test]
    fn zero_shards_is_an_error() {
        assert_eq!(shard_for("doc-1", 0), 0);
    }
}
""",
    "crates/tokenizer/Cargo.toml": '[package]\nname = "tokenizer"\nversion = "0.4.1"\nedition = "2021"\n',
    "crates/tokenizer/src/lib.rs": """//! Splits text into tokens for the search index.

pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| t.to_lowercase())
        .collect()
}
""",
}


@scenario("cargo_root_panic")
def cargo_root_panic(h: Builder) -> None:
    """A Rust workspace whose root is the `indexer` package: `cargo test -p tokenizer` passed, `cargo test -p
    indexer` failed three times with a panic at src/lib.rs:10:5 (divide by zero); the agent stopped."""
    h.tree(INDEXER)
    s: Session = h.claude(3.5)
    s.ask("does the tokenizer crate still pass after the unicode change?")
    s.command(
        "cargo test -p tokenizer",
        f"   Compiling tokenizer v0.4.1 ({h.repo}/crates/tokenizer)\n"
        "    Finished `test` profile [unoptimized + debuginfo] target(s) in 1.72s\n"
        "     Running unittests src/lib.rs (target/debug/deps/tokenizer-8c41d0e2a9b3f175)\n\nrunning 0 tests\n\n"
        "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n",
        0,
        desc="Run the tokenizer tests",
    )
    s.say("It compiles and passes, but it has no tests of its own any more.")
    s = h.codex(0.4)
    s.ask("cargo test -p indexer panics since I added the zero-shards test; shards = 0 should be an error, not a crash")
    line = _line(INDEXER, "src/lib.rs", "hash % shards")
    run = o.cargo_test(
        "indexer",
        "0.1.0",
        str(h.repo),
        ["tests::same_key_same_shard"],
        "tests::zero_shards_is_an_error",
        [
            f"thread 'tests::zero_shards_is_an_error' panicked at src/lib.rs:{line}:5:",
            "attempt to calculate the remainder with a divisor of zero",
        ],
    )
    s.command("cargo test -p indexer", run, 101, note="Reproducing")
    s.read("src/lib.rs")
    s.command("cargo test -p indexer -- zero_shards", run, 101)
    s.command("RUST_BACKTRACE=1 cargo test -p indexer -- zero_shards", run, 101)
    s.say(
        "The panic is `hash % shards` with shards = 0. Returning a `Result` from `shard_for` changes its 14 "
        "callers in the service; checking in the config loader instead keeps the signature. I stopped to ask "
        "which you want."
    )
    h.target(
        "src/lib.rs",
        "tests::zero_shards_is_an_error",
        "zero_shards_is_an_error",
        why="the person's request; the panic is located in src/lib.rs and the test still fails",
    )


# ------------------------------------------------------------------------------------------- java

JAVA: Tree = {
    "settings.gradle": 'rootProject.name = "billing"\n',
    "build.gradle": """plugins {
    id 'java'
}

repositories { mavenCentral() }

dependencies {
    testImplementation 'org.junit.jupiter:junit-jupiter:5.11.3'
    testRuntimeOnly 'org.junit.platform:junit-platform-launcher'
}

test { useJUnitPlatform() }
""",
    "gradlew": (
        '#!/bin/sh\nexec java -classpath gradle/wrapper/gradle-wrapper.jar org.gradle.wrapper.GradleWrapperMain "$@"\n'
    ),
    "src/main/java/com/acme/billing/InvoiceService.java": """package com.acme.billing;

import java.math.BigDecimal;
import java.math.RoundingMode;

public class InvoiceService {
    public BigDecimal total(BigDecimal net, BigDecimal discount, BigDecimal taxRate) {
        BigDecimal taxed = net.multiply(BigDecimal.ONE.add(taxRate));
        return taxed.subtract(discount).setScale(2, RoundingMode.HALF_UP);
    }
}
""",
    "src/test/java/com/acme/billing/InvoiceServiceTest.java": """package com.acme.billing;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.math.BigDecimal;
import org.junit.jupiter.api.Test;

class InvoiceServiceTest {
    private final InvoiceService service = new InvoiceService();

    @Test
    void totalWithoutDiscount() {
        BigDecimal total = service.total(new BigDecimal("100"), BigDecimal.ZERO, new BigDecimal("0.19"));
        assertEquals(new BigDecimal("119.00"), total);
    }

    @Test
    void appliesDiscountBeforeTax() {
        BigDecimal total = service.total(new BigDecimal("100"), new BigDecimal("10"), new BigDecimal("0.19"));
        assertEquals(new BigDecimal("107.10"), total);
    }
}
""",
}


@scenario("gradle_invoice")
def gradle_invoice(h: Builder) -> None:
    """Claude Code 2.0: `./gradlew test` failed twice (`InvoiceServiceTest > appliesDiscountBeforeTax() FAILED`);
    the session ended on the failure."""
    h.tree(JAVA)
    s = h.claude(1.2, legacy=True)
    s.ask("discounts must come off the net amount before VAT, the accountant says our invoices are wrong")
    test = "src/test/java/com/acme/billing/InvoiceServiceTest.java"
    line = _line(JAVA, test, 'assertEquals(new BigDecimal("107.10")')

    def gradle(seconds: int) -> str:
        return "\n".join(
            [
                "> Task :compileJava",
                "> Task :processResources NO-SOURCE",
                "> Task :classes",
                "> Task :compileTestJava UP-TO-DATE",
                "> Task :processTestResources NO-SOURCE",
                "> Task :testClasses UP-TO-DATE",
                "",
                "> Task :test FAILED",
                "",
                "InvoiceServiceTest > appliesDiscountBeforeTax() FAILED",
                f"    org.opentest4j.AssertionFailedError at InvoiceServiceTest.java:{line}",
                "",
                "2 tests completed, 1 failed",
                "",
                "FAILURE: Build failed with an exception.",
                "",
                "* What went wrong:",
                "Execution failed for task ':test'.",
                f"> There were failing tests. See the report at: file://{h.repo}/build/reports/tests/test/index.html",
                "",
                "* Try:",
                "> Run with --scan to get full insights.",
                "",
                f"BUILD FAILED in {seconds}s",
                "4 actionable tasks: 2 executed, 2 up-to-date",
            ]
        )

    s.command("./gradlew test", gradle(6), 1)
    s.read("src/main/java/com/acme/billing/InvoiceService.java")
    s.edit(
        "src/main/java/com/acme/billing/InvoiceService.java",
        "        BigDecimal taxed = net.multiply(BigDecimal.ONE.add(taxRate));\n"
        "        return taxed.subtract(discount).setScale(2, RoundingMode.HALF_UP);",
        "        BigDecimal taxed = net.subtract(discount).multiply(BigDecimal.ONE.add(taxRate));\n"
        "        return taxed.setScale(2, RoundingMode.HALF_DOWN);",
    )
    s.command("./gradlew test --tests 'com.acme.billing.InvoiceServiceTest'", gradle(3), 1)
    h.target(
        "src/test/java/com/acme/billing/InvoiceServiceTest.java",
        "InvoiceServiceTest.java",
        "InvoiceServiceTest",
        "appliesDiscountBeforeTax",
        "src/main/java/com/acme/billing/InvoiceService.java",
        "InvoiceService.java",
        why="the person's request; its test failed twice and the session ended on the failure",
    )


# ------------------------------------------------------------------------------------------- long path

WEBHOOK = "services/billing/billing/adapters/payment_providers/stripe_webhook_signature.py"
WEBHOOK_TREE = merge(
    SERVICES,
    {
        "services/billing/billing/adapters/__init__.py": "",
        "services/billing/billing/adapters/payment_providers/__init__.py": "",
        WEBHOOK: '''"""Verifies the signature of Stripe's webhook calls."""

import hashlib
import hmac


def verify(payload: bytes, header: str, secret: str) -> bool:
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + payload, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])
''',
    },
)


@scenario("interrupted_long_path")
def interrupted_long_path(h: Builder) -> None:
    """The person asked for a timestamp tolerance in a file whose path is 79 characters long and interrupted
    the agent while it was reading; before that, billing's tests passed."""
    h.tree(WEBHOOK_TREE)
    s: Session = h.claude(2.6, sub="services/billing")
    s.ask("run the billing service's tests")
    s.command("python -m pytest -q", "no tests ran in 0.01s", 5, desc="Run the billing tests")
    s.say("The billing service has no tests yet (pytest exits 5: nothing collected).")
    s = h.codex(0.3)
    s.ask(
        f"{WEBHOOK} accepts replayed webhooks: reject signatures whose timestamp is more than 5 minutes old, and "
        "accept any of several v1 signatures in the header (Stripe sends one per secret during rotation)"
    )
    s.read(WEBHOOK)
    s.command("rg -n 'verify\\(' services/billing", f"{WEBHOOK}:7:def verify(payload: bytes, header: str, "
              "secret: str) -> bool:", 0)  # fmt: skip
    s.interrupt()
    h.target(
        WEBHOOK,
        "billing/adapters/payment_providers/stripe_webhook_signature.py",
        "payment_providers/stripe_webhook_signature.py",
        "stripe_webhook_signature.py",
        "stripe_webhook_signature",
        why="the last request, interrupted while the agent was reading and not taken up again",
    )
