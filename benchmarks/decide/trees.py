"""The repositories the histories are about: small real file trees (a Python service, a web front end with an
API in TypeScript, a Go service, a Rust workspace, a Python monorepo with services). A history's repository is
one or two of them; the files its agents read, edit and test exist, with the text the sessions show."""

from __future__ import annotations

from collections.abc import Mapping

Tree = Mapping[str, str]

PYTHON: Tree = {
    "pyproject.toml": """[project]
name = "ledger"
version = "0.9.2"
requires-python = ">=3.11"
dependencies = ["httpx>=0.27", "pydantic>=2.7"]

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["src"]

[tool.mypy]
strict = true
files = ["src"]
""",
    "README.md": "# ledger\n\nInvoices, taxes and exchange rates for the billing service.\n\n    make test\n",
    "Makefile": "test:\n\tpython3 -m pytest -q\n\nlint:\n\truff check src tests\n\tmypy\n",
    "src/parser/__init__.py": "from parser.dates import parse_iso_week\nfrom parser.numbers import parse_amount\n",
    "src/parser/dates.py": '''"""Dates as people type them into invoices."""

from datetime import date, timedelta


def parse_iso_week(text: str) -> date:
    """'2026-W05-3' -> the Wednesday of ISO week 5 of 2026."""
    year, week, day = text.split("-")
    jan4 = date(int(year), 1, 4)
    monday = jan4 - timedelta(days=jan4.isoweekday() - 1)
    return monday + timedelta(weeks=int(week[1:]), days=int(day) - 1)
''',
    "src/parser/numbers.py": '''"""Amounts as people type them: '1,200.50', '1e3', '12 %'."""

from decimal import Decimal


def _strip(text):
    return text.replace(",", "").strip()


def parse_amount(text: str) -> Decimal:
    cleaned = _strip(text)
    if not cleaned.replace(".", "", 1).isdigit():
        raise ValueError(f"not an amount: {text!r}")
    return Decimal(cleaned)


def parse_percent(text: str) -> Decimal:
    return parse_amount(text.rstrip("% ")) / 100
''',
    "src/billing/__init__.py": "",
    "src/billing/invoice.py": '''"""Invoice totals."""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from billing.tax import vat_rate


@dataclass
class Line:
    description: str
    quantity: int
    unit_price: Decimal


def subtotal(lines: list[Line]) -> Decimal:
    return sum((line.unit_price * line.quantity for line in lines), Decimal(0))


def total(lines: list[Line], country: str) -> Decimal:
    gross = subtotal(lines) * (1 + vat_rate(country))
    return float(gross.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def due_date(issued, days=30):
    return issued + timedelta(days=days)


def is_overdue(issued: date, today: date) -> bool:
    return today > due_date(issued)
''',
    "src/billing/tax.py": '''"""VAT rates by country."""

from decimal import Decimal

RATES = {"DE": Decimal("0.19"), "FR": Decimal("0.20"), "NL": Decimal("0.21"), "EE": Decimal("0.22")}


def vat_rate(country: str) -> Decimal:
    return RATES[country]
''',
    "src/api/__init__.py": "",
    "src/api/routes.py": '''"""HTTP routes of the billing API."""

from api.handlers import create_invoice, delete_invoice, get_invoice, list_orders

ROUTES = [
    ("GET", "/orders", list_orders),
    ("POST", "/invoices", create_invoice),
    ("GET", "/invoices/{id}", get_invoice),
    ("DELETE", "/invoices/{id}", delete_invoice),
]
''',
    "src/api/schemas.py": '''"""Request payloads."""

from pydantic import BaseModel


class InvoiceIn(BaseModel):
    customer_id: str
    country: str
    lines: list[dict[str, object]]
''',
    "src/api/handlers.py": '''"""Request handlers."""

import os
import json

from api.pagination import page


def list_orders(request):
    return page(request.db.orders(), request.query.get("cursor"))


def create_invoice(request):
    try:
        data = json.loads(request.body)
    except:
        return 400, {"error": "invalid json"}
    return 201, request.db.insert_invoice(data)


def get_invoice(request, id):
    return 200, request.db.invoice(id)


def delete_invoice(request, id):
    request.db.delete_invoice(id)
    return 200, {}
''',
    "src/api/pagination.py": '''"""Cursor pagination: the cursor is the id of the last item of the previous page."""


def page(items, cursor, size=50):
    ids = [item["id"] for item in items]
    start = ids.index(cursor) + 1 if cursor else 0
    chunk = items[start : start + size]
    return {"items": chunk, "next": chunk[-1]["id"] if len(chunk) == size else None}
''',
    "src/utils/__init__.py": "",
    "src/utils/retry.py": '''"""Retries with exponential backoff for outgoing HTTP calls."""

import random
import time

MAX_DELAY = 30.0


def backoff(attempt: int, base: float = 0.5) -> float:
    return base * 2**attempt + random.uniform(0, base)


def retry(call, attempts: int = 5):
    for attempt in range(attempts):
        try:
            return call()
        except ConnectionError:
            time.sleep(backoff(attempt))
    return call()
''',
    "src/reports/__init__.py": "",
    "src/reports/export.py": '''"""Exports of report rows."""


def to_json(rows: list[dict[str, object]]) -> str:
    import json

    return json.dumps(rows, default=str)
''',
    "src/fx/__init__.py": "",
    "src/fx/rates.py": '''"""Exchange rates from the central bank's feed."""

import httpx

FEED = "https://rates.example.org/daily.json"


def fetch_rates(client: httpx.Client | None = None) -> dict[str, float]:
    client = client or httpx.Client()
    response = client.get(FEED)
    response.raise_for_status()
    return {row["currency"]: float(row["rate"]) for row in response.json()["rates"]}
''',
    "src/importer/__init__.py": "",
    "src/importer/loader.py": '''"""Loads bank statements (CSV) into the ledger."""

import csv
import time


def load(path, db):
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            db.insert_statement_line(row)
            db.commit()
            time.sleep(0.01)  # the old bank API rate limit
''',
    "src/text/__init__.py": "",
    "src/text/slugify.py": '''"""URL slugs for invoice titles."""

import re


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
''',
    "scripts/backfill.py": '''"""Backfills invoice numbers for rows imported before 2024."""

import sys

from billing.invoice import subtotal

if __name__ == "__main__":
    print("backfill", sys.argv[1:], subtotal)
''',
    "tests/conftest.py": """import pytest


@pytest.fixture
def rows():
    return [{"id": "a"}, {"id": "b"}, {"id": "c"}]
""",
    "tests/test_dates.py": """from datetime import date

from parser.dates import parse_iso_week


def test_parse_iso_week_monday():
    assert parse_iso_week("2026-W01-1") == date(2025, 12, 29)


def test_parse_iso_week():
    assert parse_iso_week("2026-W05-3") == date(2026, 1, 28)


def test_parse_iso_week_rejects_garbage():
    import pytest

    with pytest.raises(ValueError):
        parse_iso_week("last tuesday")
""",
    "tests/test_numbers.py": """from decimal import Decimal

from parser.numbers import parse_amount, parse_percent


def test_thousands():
    assert parse_amount("1,200.50") == Decimal("1200.50")


def test_scientific():
    assert parse_amount("1e3") == Decimal("1000")


def test_percent():
    assert parse_percent("12 %") == Decimal("0.12")
""",
    "tests/test_invoice.py": """from decimal import Decimal

from billing.invoice import Line, subtotal, total


def test_subtotal():
    assert subtotal([Line("a", 2, Decimal("1.50"))]) == Decimal("3.00")


def test_total_rounds_half_up():
    lines = [Line("widget", 1, Decimal("1.50"))]
    assert total(lines, "DE") == Decimal("1.79")
""",
    "tests/test_tax.py": """from decimal import Decimal

from billing.tax import vat_rate


def test_germany():
    assert vat_rate("DE") == Decimal("0.19")


def test_estonia_2025():
    assert vat_rate("EE") == Decimal("0.24")
""",
    "tests/test_routes.py": """from api.routes import ROUTES


def test_routes_are_unique():
    assert len({(m, p) for m, p, _ in ROUTES}) == len(ROUTES)


def test_delete_returns_204(client):
    assert client.delete("/invoices/7").status_code == 204
""",
    "tests/test_retry.py": """from utils.retry import MAX_DELAY, backoff


def test_backoff_grows():
    assert backoff(3) > backoff(1)


def test_backoff_caps_at_max():
    assert backoff(10) <= MAX_DELAY
""",
    "tests/test_export.py": """from reports.export import to_json


def test_to_json():
    assert to_json([{"a": 1}]) == '[{"a": 1}]'
""",
    "tests/test_pagination.py": """from api.pagination import page


def test_first_page(rows):
    assert page(rows, None, size=2)["next"] == "b"


def test_cursor_of_deleted_item(rows):
    assert page(rows[1:], "a", size=2)["items"] == rows[1:]
""",
    "tests/test_importer.py": """from importer.loader import load


def test_load_statement(tmp_path, fake_db):
    path = tmp_path / "s.csv"
    path.write_text("date,amount\\n" + "2026-01-02,10.00\\n" * 2000)
    load(path, fake_db)
    assert fake_db.count() == 2000
""",
    "tests/test_slugify.py": """import unittest

from text.slugify import slugify


class SlugifyTest(unittest.TestCase):
    def test_strips_accents(self):
        self.assertEqual(slugify("Café Crème"), "cafe-creme")

    def test_spaces(self):
        self.assertEqual(slugify("a  b"), "a-b")

    def test_empty(self):
        self.assertEqual(slugify(""), "")
""",
}

WEB: Tree = {
    "web/package.json": """{
  "name": "web",
  "version": "0.3.0",
  "private": true,
  "scripts": {"test": "jest", "lint": "eslint src", "build": "tsc --noEmit && vite build"},
  "devDependencies": {"jest": "^29.7.0", "ts-jest": "^29.2.5", "typescript": "^5.6.3"}
}
""",
    "web/tsconfig.json": """{
  "compilerOptions": {"strict": true, "jsx": "react-jsx", "target": "ES2022"},
  "include": ["src"]
}
""",
    "web/src/components/Cart.tsx": """import { formatMoney } from "../lib/format";

export function Cart({ items, taxRate }: { items: { price: number; qty: number }[]; taxRate: number }) {
  const subtotal = items.reduce((sum, i) => sum + i.price * i.qty, 0);
  const total = subtotal;
  return <div data-testid="total">{formatMoney(total)}</div>;
}
""",
    "web/src/components/Cart.test.tsx": """import { render, screen } from "@testing-library/react";
import { Cart } from "./Cart";

const items = [{ price: 10, qty: 2 }];

describe("Cart", () => {
  it("renders the empty state", () => {
    render(<Cart items={[]} taxRate={0} />);
    expect(screen.getByTestId("total")).toHaveTextContent("$0.00");
  });

  it("shows the total with tax", () => {
    render(<Cart items={items} taxRate={0.07} />);
    expect(screen.getByTestId("total")).toHaveTextContent("$21.40");
  });
});
""",
    "web/src/lib/format.ts": """export function formatMoney(value: number, currency = "USD"): string {
  return new Intl.NumberFormat("en-US", { style: "currency", currency }).format(value);
}

export function formatDate(iso: string, locale?: string): string {
  const lang: string = locale;
  return new Date(iso).toLocaleDateString(lang, { dateStyle: "medium" });
}
""",
    "web/src/lib/format.test.ts": """import { formatDate, formatMoney } from "./format";

test("formats money", () => {
  expect(formatMoney(1234.5)).toBe("$1,234.50");
});

test("formats dates in the user's locale", () => {
  expect(formatDate("2026-03-01T12:00:00Z", "de-DE")).toBe("01.03.2026");
});
""",
    "web/src/hooks/useCart.ts": """import { useState } from "react";

export function useCart() {
  const [items, setItems] = useState<{ id: string; qty: number }[]>([]);
  const setQty = (id: string, qty: number) =>
    setItems((xs) => xs.map((x) => (x.id === id ? { ...x, qty } : x)));
  return { items, setQty, add: (id: string) => setItems((xs) => [...xs, { id, qty: 1 }]) };
}
""",
    "web/src/hooks/useCart.test.ts": """import { act, renderHook } from "@testing-library/react";
import { useCart } from "./useCart";

test("adds an item", () => {
  const { result } = renderHook(() => useCart());
  act(() => result.current.add("a"));
  expect(result.current.items).toEqual([{ id: "a", qty: 1 }]);
});

test("removes item when quantity hits zero", () => {
  const { result } = renderHook(() => useCart());
  act(() => result.current.add("a"));
  act(() => result.current.setQty("a", 0));
  expect(result.current.items).toEqual([]);
});
""",
    "api/package.json": """{
  "name": "api",
  "version": "1.4.0",
  "private": true,
  "scripts": {"test": "jest", "build": "tsc -p ."},
  "devDependencies": {"jest": "^29.7.0", "ts-jest": "^29.2.5", "typescript": "^5.6.3"}
}
""",
    "api/tsconfig.json": """{
  "compilerOptions": {"strict": true, "target": "ES2022", "module": "node16"},
  "include": ["src"]
}
""",
    "api/src/server.ts": """import { createServer } from "node:http";
import { findOrder } from "./db";

export const server = createServer(async (req, res) => {
  const id = new URL(req.url ?? "/", "http://x").searchParams.get("id");
  const order = await findOrder(id);
  res.writeHead(order ? 200 : 404, { "content-type": "application/json" });
  res.end(JSON.stringify(order ?? { error: "not found" }));
});
""",
    "api/src/server.test.ts": """import { server } from "./server";

test("server is created", () => {
  expect(server.listening).toBe(false);
});
""",
    "api/src/db.ts": """export type Order = { id: string; total: number };

const orders: Order[] = [{ id: "1", total: 20 }];

export async function findOrder(id: string): Promise<Order | undefined> {
  return orders.find((o) => o.id === id);
}
""",
}

GO: Tree = {
    "go.mod": "module github.com/acme/edge\n\ngo 1.23\n\nrequire github.com/jackc/pgx/v5 v5.7.1\n",
    "README.md": "# edge\n\nThe edge proxy: rate limiting, auth, config.\n",
    "cmd/edge/main.go": """package main

import (
\t"log"

\t"github.com/acme/edge/pkg/config"
)

func main() {
\tcfg, err := config.Load("edge.yaml")
\tif err != nil {
\t\tlog.Fatal(err)
\t}
\tlog.Printf("listening on %s", cfg.Listen)
}
""",
    "pkg/ratelimit/limiter.go": """package ratelimit

import "time"

// Limiter is a token bucket.
type Limiter struct {
\tRate   float64 // tokens per second
\tBurst  int
\ttokens float64
\tlast   time.Time
}

func (l *Limiter) Allow(now time.Time) bool {
\tl.tokens += now.Sub(l.last).Seconds() * l.Rate
\tl.last = now
\tif l.tokens >= 1 {
\t\tl.tokens--
\t\treturn true
\t}
\treturn false
}
""",
    "pkg/ratelimit/limiter_test.go": """package ratelimit

import (
\t"testing"
\t"time"
)

func TestLimiterBurst(t *testing.T) {
\tnow := time.Unix(0, 0)
\tl := &Limiter{Rate: 1, Burst: 3, tokens: 3, last: now}
\tfor i := 0; i < 3; i++ {
\t\tl.Allow(now)
\t}
\tlater := now.Add(time.Hour)
\tallowed := 0
\tfor i := 0; i < 5; i++ {
\t\tif l.Allow(later) {
\t\t\tallowed++
\t\t}
\t}
\tif allowed > l.Burst {
\t\tt.Errorf("Allow() after burst = true, want false")
\t}
}
""",
    "pkg/config/config.go": """package config

import "os"

type Config struct {
\tListen  string
\tTimeout string
}

func Load(path string) (*Config, error) {
\t_, err := os.ReadFile(path)
\treturn &Config{Listen: ":8080"}, err
}
""",
    "pkg/config/duration.go": """package config

import (
\t"strconv"
\t"strings"
\t"time"
)

// ParseDuration accepts Go durations and plain seconds ("90").
func ParseDuration(s string) (time.Duration, error) {
\tif n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
\t\treturn time.Duration(n) * time.Second, nil
\t}
\treturn time.ParseDuration(s)
}
""",
    "pkg/config/duration_test.go": """package config

import "testing"

func TestParseDuration(t *testing.T) {
\tt.Run("seconds", func(t *testing.T) {
\t\tif d, _ := ParseDuration("90"); d.Seconds() != 90 {
\t\t\tt.Fatal(d)
\t\t}
\t})
\tt.Run("negative", func(t *testing.T) {
\t\tif _, err := ParseDuration("-5"); err == nil {
\t\t\tt.Fatal("ParseDuration(\\"-5\\") err = nil, want an error")
\t\t}
\t})
}
""",
    "pkg/auth/auth.go": 'package auth\n\nfunc Check(token string) bool { return token != "" }\n',
    "pkg/auth/auth_test.go": """package auth

import "testing"

func TestCheck(t *testing.T) {
\tif !Check("x") {
\t\tt.Fatal()
\t}
}
""",
    "internal/store/postgres.go": """package store

import (
\t"context"
\t"database/sql"
\t"errors"

\t"github.com/jackc/pgx/v5/pgxpool"
)

type Store struct{ pool *pgxpool.Pool }

func (s *Store) Order(ctx context.Context, id string) (*Order, error) {
\trow := s.pool.QueryRow(ctx, "SELECT id, total FROM orders WHERE id = $1", id)
\tvar o Order
\tif err := row.Scan(&o.ID, &o.Total); errors.Is(err, sql.ErrNoRow) {
\t\treturn nil, nil
\t} else if err != nil {
\t\treturn nil, err
\t}
\treturn &o, nil
}

type Order struct {
\tID    string
\tTotal int64
}
""",
}

RUST: Tree = {
    "Cargo.toml": '[workspace]\nmembers = ["crates/tokenizer", "crates/gateway"]\nresolver = "2"\n',
    "crates/tokenizer/Cargo.toml": '[package]\nname = "tokenizer"\nversion = "0.4.1"\nedition = "2021"\n',
    "crates/tokenizer/src/lib.rs": """//! Splits text into tokens for the search index.

pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| t.to_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_ascii() {
        assert_eq!(tokenize("Hello, world"), vec!["hello", "world"]);
    }

    #[test]
    fn roundtrip_unicode() {
        assert_eq!(tokenize("café"), vec!["café"]);
    }
}
""",
    "crates/gateway/Cargo.toml": """[package]
name = "gateway"
version = "0.2.0"
edition = "2021"

[dependencies]
serde = { version = "1", features = ["derive"] }
toml = "0.8"
""",
    "crates/gateway/src/main.rs": """mod config;

fn main() {
    let cfg = config::load("gateway.toml").expect("config");
    println!("gateway on {}", cfg.listen);
}
""",
    "crates/gateway/src/config.rs": """use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
pub struct Config {
    pub listen: String,
    pub timeout_secs: u64,
}

impl Config {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

pub fn load(path: &str) -> Result<Config, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)?;
    let cfg: Config = toml::from_str(&text)?;
    let _t: u32 = cfg.timeout_secs;
    Ok(cfg)
}
""",
}

SERVICES: Tree = {
    "README.md": "# platform\n\nServices of the platform, one directory each.\n",
    "services/auth/pyproject.toml": """[project]
name = "auth"
version = "2.1.0"

[tool.pytest.ini_options]
testpaths = ["tests"]
""",
    "services/auth/auth/__init__.py": "",
    "services/auth/auth/tokens.py": '''"""Access and refresh tokens."""

import time


def refresh(claims: dict[str, object], ttl: int = 900) -> dict[str, object]:
    rotated = dict(claims)
    rotated["iat"] = int(time.time())
    rotated["exp"] = claims["exp"] + ttl
    return rotated
''',
    "services/auth/tests/test_tokens.py": """from auth.tokens import refresh


def test_refresh_extends_expiry():
    assert refresh({"sub": "u1", "exp": 100})["exp"] == 1000


def test_refresh_rotates():
    old = {"sub": "u1", "iat": 1}
    assert refresh(old)["iat"] != 1
""",
    "services/billing/pyproject.toml": '[project]\nname = "billing"\nversion = "0.3.0"\n',
    "services/billing/billing/__init__.py": "",
    "services/billing/billing/charge.py": "def charge(amount: int) -> int:\n    return amount\n",
}

# Other directories on the same machine (sessions there are not about the repository).
CLIENT: Tree = {
    "pyproject.toml": '[project]\nname = "repo-client"\nversion = "0.1.0"\n',
    "client/http.py": "def get(url):\n    raise NotImplementedError\n",
    "tests/test_client.py": "from client.http import get\n\n\ndef test_get():\n    assert get('https://x')\n",
}
DOTFILES: Tree = {
    "install.sh": "#!/bin/sh\nln -sf $PWD/zshrc ~/.zshrc\n",
    "zshrc": "export EDITOR=vim\n",
}


def merge(*trees: Tree) -> dict[str, str]:
    out: dict[str, str] = {}
    for tree in trees:
        out.update(tree)
    return out
