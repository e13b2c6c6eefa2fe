"""What the tools print, as they print it: pytest, unittest, jest (through npm), go test and go build, cargo,
mypy, tsc and ruff. Each function returns one command's output for a scenario to put in a session."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

WIDTH = 80


def _rule(title: str, ch: str = "=") -> str:
    """pytest's section rules: the title centred in a line of `ch`."""
    if not title:
        return ch * WIDTH
    side = (WIDTH - len(title) - 2) // 2
    line = f"{ch * side} {title} {ch * side}"
    return line + ch * (WIDTH - len(line))


def _progress(marks: str, percent: int, prefix: str = "") -> str:
    head = f"{prefix} {marks}" if prefix else marks
    tail = f"[{percent:>3}%]"
    return head + " " * max(1, WIDTH - len(head) - len(tail)) + tail


@dataclass(frozen=True)
class PyFail:
    """One failed pytest test."""

    file: str  # as pytest names it (relative to the rootdir)
    test: str  # `test_x` or `TestX::test_x`
    code: tuple[str, ...]  # the test's source up to the failing line (last), as pytest prints it
    error: tuple[str, ...]  # the `E` lines, without the `E       ` prefix
    line: int  # the failing line's number in `file`
    exc: str = "AssertionError"
    # When the error is raised in the code under test: that frame as pytest prints it (locals, source with
    # `>` and the `E` lines), and its file:line.
    inner: tuple[str, ...] = ()
    where: str = ""

    @property
    def nodeid(self) -> str:
        return f"{self.file}::{self.test}"

    def section(self) -> str:
        out = [_rule(self.test.split("::")[-1], "_"), ""]
        for i, src in enumerate(self.code):
            out.append((">   " if i == len(self.code) - 1 else "    ") + src)
        if self.inner:
            out += ["", f"{self.file}:{self.line}: ", "_ " * 39 + "_", "", *self.inner]
        else:
            out += ["E       " + e for e in self.error]
        out += ["", f"{self.where or f'{self.file}:{self.line}'}: {self.exc}"]
        return "\n".join(out)

    def summary(self) -> str:
        return f"FAILED {self.nodeid} - {self.error[0]}"


@dataclass(frozen=True)
class PyFile:
    """The tests of one file in a run, in order: '.' passed, 'F' failed, 's' skipped."""

    file: str
    marks: str


@dataclass
class Pytest:
    """A pytest run: which files ran with which results, which failures, how long it took."""

    files: Sequence[PyFile]
    failures: Sequence[PyFail] = field(default_factory=tuple)
    seconds: float = 0.42
    quiet: bool = True
    rootdir: str = ""  # printed in the header of a non-quiet run
    python: str = "3.12.7"

    def __str__(self) -> str:
        total = sum(len(f.marks) for f in self.files)
        out: list[str] = []
        if not self.quiet:
            out += [
                _rule("test session starts"),
                f"platform linux -- Python {self.python}, pytest-8.3.4, pluggy-1.5.0",
                f"rootdir: {self.rootdir}",
                "configfile: pyproject.toml",
                f"collected {total} items",
                "",
            ]
        done = 0
        if self.quiet:
            marks = "".join(f.marks for f in self.files)
            out.append(_progress(marks, 100))
        else:
            for f in self.files:
                done += len(f.marks)
                out.append(_progress(f.marks, round(100 * done / total), f.file))
        failed = sum(f.marks.count("F") for f in self.files)
        skipped = sum(f.marks.count("s") for f in self.files)
        passed = total - failed - skipped
        if not self.failures:
            tail = f"{passed} passed" + (f", {skipped} skipped" if skipped else "") + f" in {self.seconds:.2f}s"
            out.append(tail if self.quiet else _rule(tail))
            return "\n".join(out)
        out.append(_rule("FAILURES"))
        out += [f.section() for f in self.failures]
        out.append(_rule("short test summary info"))
        out += [f.summary() for f in self.failures]
        counts = [f"{failed} failed", f"{passed} passed"] + ([f"{skipped} skipped"] if skipped else [])
        tail = ", ".join(counts) + f" in {self.seconds:.2f}s"
        out.append(tail if self.quiet else _rule(tail))
        return "\n".join(out)


def unittest_fail(module: str, cls: str, test: str, path: str, line: int, code: str, error: str, ran: int) -> str:
    """`python -m unittest`: one failure among `ran` tests."""
    marks = "F" + "." * (ran - 1)
    return "\n".join(
        [
            marks,
            "=" * 70,
            f"FAIL: {test} ({module}.{cls}.{test})",
            "-" * 70,
            "Traceback (most recent call last):",
            f'  File "{path}", line {line}, in {test}',
            f"    {code}",
            f"AssertionError: {error}",
            "",
            "-" * 70,
            f"Ran {ran} tests in 0.004s",
            "",
            "FAILED (failures=1)",
        ]
    )


@dataclass(frozen=True)
class JestSuite:
    """One jest test file: its tests (name, passed, ms) and the failure's report. No tests and a report: the
    suite failed to run (a compile error)."""

    file: str  # relative to the package (jest's rootDir)
    describe: str  # the describe block, "" for top-level tests
    tests: tuple[tuple[str, bool, int], ...]
    failure: tuple[str, ...] = ()  # the lines under `● describe › test`

    @property
    def failed(self) -> bool:
        return any(not ok for _name, ok, _ms in self.tests) or (not self.tests and bool(self.failure))


def npm_header(package: str, version: str, script: str, command: str) -> str:
    return f"\n> {package}@{version} {script}\n> {command}\n"


def jest(suites: Sequence[JestSuite], seconds: float = 2.31) -> str:
    """A jest run as `npm test` shows it: every suite's result, a failed one's tests and failures."""
    out: list[str] = []
    for s in suites:
        out.append(f" {'FAIL' if s.failed else 'PASS'}  {s.file}")
        if not s.failed:
            continue
        if not s.tests:
            out += ["  ● Test suite failed to run", ""]
            out += [f"    {x}" if x else "" for x in s.failure]
            out.append("")
            continue
        indent = "  "
        if s.describe:
            out.append(f"  {s.describe}")
            indent = "    "
        for name, ok, ms in s.tests:
            out.append(f"{indent}{'✓' if ok else '✕'} {name} ({ms} ms)")
        out.append("")
        for name, ok, _ms in s.tests:
            if not ok:
                out += [f"  ● {s.describe} › {name}" if s.describe else f"  ● {name}", ""]
                out += [f"    {x}" if x else "" for x in s.failure]
                out.append("")
    failed_suites = sum(s.failed for s in suites)
    tests = [t for s in suites for t in s.tests]
    failed_tests = sum(not ok for _n, ok, _ms in tests)
    suite_line = f"{failed_suites} failed, " if failed_suites else ""
    test_line = f"{failed_tests} failed, " if failed_tests else ""
    out += [
        f"Test Suites: {suite_line}{len(suites) - failed_suites} passed, {len(suites)} total",
        f"Tests:       {test_line}{len(tests) - failed_tests} passed, {len(tests)} total",
        "Snapshots:   0 total",
        f"Time:        {seconds:.2f} s",
        "Ran all test suites." if len(suites) > 1 else f"Ran all test suites matching /{suites[0].file}/i.",
    ]
    return "\n".join(out)


@dataclass(frozen=True)
class GoPkg:
    """One package of a `go test` run: 'ok', 'FAIL' (with the failed tests' lines) or no test files."""

    path: str  # relative to the module
    status: str = "ok"  # ok | FAIL | none
    log: tuple[str, ...] = ()  # `--- FAIL: …` and the test's output, as printed before the package's FAIL line


def go_test(module: str, packages: Sequence[GoPkg]) -> str:
    """`go test`: each package's line in order, a failed one preceded by its tests' report."""
    out: list[str] = []
    for pkg in packages:
        full = f"{module}/{pkg.path}" if pkg.path else module
        if pkg.status == "ok":
            out.append(f"ok  \t{full}\t0.0{len(pkg.path) % 7 + 2}1s")
        elif pkg.status == "FAIL":
            out += [*pkg.log, "FAIL", f"FAIL\t{full}\t0.01{len(pkg.path) % 5}s"]
        else:
            out.append(f"?   \t{full}\t[no test files]")
    if any(p.status == "FAIL" for p in packages):
        out.append("FAIL")
    return "\n".join(out)


def go_build(package: str, errors: Sequence[str]) -> str:
    """`go build ./...`: the package header, then `file:line:col: message` lines."""
    return "\n".join([f"# {package}", *errors])


def cargo_test(crate: str, version: str, path: str, passed: Sequence[str], failed: str, panic: Sequence[str]) -> str:
    """`cargo test -p crate`: one failed unit test among `passed`."""
    names = sorted([*passed, failed])
    out = [
        f"   Compiling {crate} v{version} ({path})",
        "    Finished `test` profile [unoptimized + debuginfo] target(s) in 2.14s",
        f"     Running unittests src/lib.rs (target/debug/deps/{crate}-3f2a9c1d5e7b8a60)",
        "",
        f"running {len(names)} tests",
    ]
    out += [f"test {n} ... {'FAILED' if n == failed else 'ok'}" for n in names]
    out += ["", "failures:", "", f"---- {failed} stdout ----", "", *panic]
    out += ["note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace", "", ""]
    out += ["failures:", f"    {failed}", ""]
    out.append(
        f"test result: FAILED. {len(passed)} passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s"
    )
    out += ["", f"error: test failed, to rerun pass `-p {crate} --lib`"]
    return "\n".join(out)


def cargo_build(crate: str, version: str, path: str, errors: Sequence[Sequence[str]]) -> str:
    """`cargo build`: each error is its block of lines (`error[E…]: …`, ` --> file:line:col`, the snippet)."""
    out = [f"   Compiling {crate} v{version} ({path})"]
    for block in errors:
        out += [*block, ""]
    n = len(errors)
    out.append(f'error: could not compile `{crate}` (bin "{crate}") due to {n} previous error{"s" if n > 1 else ""}')
    return "\n".join(out)


def mypy(errors: Sequence[tuple[str, int, str, str]], checked: int) -> str:
    """mypy: (file, line, message, code) errors and the summary."""
    out = [f"{f}:{line}: error: {msg}  [{code}]" for f, line, msg, code in errors]
    files = len({e[0] for e in errors})
    out.append(
        f"Found {len(errors)} error{'s' if len(errors) != 1 else ''} in {files} file{'s' if files != 1 else ''} "
        f"(checked {checked} source file{'s' if checked != 1 else ''})"
    )
    return "\n".join(out)


def tsc(errors: Sequence[tuple[str, int, int, str, str]]) -> str:
    """`tsc --noEmit`: (file, line, col, code, message) errors, then the count."""
    out = [f"{f}({line},{col}): error {code}: {msg}" for f, line, col, code, msg in errors]
    firsts: dict[str, tuple[int, int]] = {}
    for f, line, *_rest in errors:
        n, first = firsts.get(f, (0, line))
        firsts[f] = (n + 1, first)
    out.append("")
    if len(errors) == 1:
        out.append(f"Found 1 error in {errors[0][0]}:{errors[0][1]}")
    elif len(firsts) == 1:
        out.append(f"Found {len(errors)} errors in the same file, starting at: {errors[0][0]}:{errors[0][1]}")
    else:
        out += [f"Found {len(errors)} errors in {len(firsts)} files.", "", "Errors  Files"]
        out += [f"{n:>6}  {f}:{first}" for f, (n, first) in firsts.items()]
    return "\n".join(out)


def ruff(errors: Sequence[tuple[str, int, int, str, str]], fixable: int = 0) -> str:
    """`ruff check --output-format concise`: (file, line, col, code, message) errors."""
    out = [f"{f}:{line}:{col}: {code} {msg}" for f, line, col, code, msg in errors]
    out.append(f"Found {len(errors)} error{'s' if len(errors) != 1 else ''}.")
    if fixable:
        out.append(f"[*] {fixable} fixable with the `--fix` option.")
    return "\n".join(out)
