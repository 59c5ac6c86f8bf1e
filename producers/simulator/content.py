"""What simulated agents type and what their tools print, per language: commands and outputs
shaped like the real tools' (pytest, cargo, tsc, go, GNU time), so parsers meet realistic text."""

from __future__ import annotations

from dataclasses import dataclass

PROJECTS = ("billing-api", "inventory-svc", "webshop", "ledger", "notifier", "search-indexer")
PROMPTS = (
    "The {area} endpoint returns 500 when the payload has no items; find out why and fix it.",
    "Add pagination to the {area} listing and cover it with tests.",
    "Refactor the {area} module so the retry logic lives in one place.",
    "Tests in the {area} package started failing after the last merge, please fix them.",
)
AREAS = ("orders", "invoices", "users", "search", "cache", "payments")
REVIEW_PROMPT = "Looks good. Review the diff once more and commit it."


@dataclass(frozen=True)
class Toolchain:
    """Commands and outputs of one language's toolchain."""

    language: str
    src: tuple[str, ...]
    test_file: str
    test_cmd: str
    flaky_cmd: str
    build_cmd: str
    build_exit: int
    bench_cmd: str
    install_cmd: str

    def test_output(self, passed: int, failed: int, target: str) -> str:
        if self.language == "python":
            lines = [f"FAILED {target}::test_case_{i} - AssertionError: assert 404 == 201"
                     for i in range(failed)]
            summary = (f"{failed} failed, {passed} passed" if failed else f"{passed} passed")
            return "\n".join([*lines, f"{summary} in 0.{passed + 40}s", ""])
        if self.language == "rust":
            status = "FAILED" if failed else "ok"
            return (f"running {passed + failed} tests\n"
                    f"test result: {status}. {passed} passed; {failed} failed; 0 ignored; "
                    "0 measured; 0 filtered out; finished in 0.03s\n")
        if self.language == "typescript":
            fails = f"{failed} failed, " if failed else ""
            return (f"Test Suites: {1 if failed else 0} failed, 3 passed, 4 total\n"
                    f"Tests:       {fails}{passed} passed, {passed + failed} total\n")
        head = "".join(f"--- FAIL: TestCase{i} (0.00s)\n" for i in range(failed))
        return head + ("FAIL\nFAIL\texample.com/app\t0.014s\n" if failed else
                       "ok  \texample.com/app\t0.012s\n")

    def test_exit(self) -> int:
        return 101 if self.language == "rust" else 1

    def compile_error(self, path: str, line: int) -> str:
        if self.language == "rust":
            return (f"error[E0308]: mismatched types\n  --> {path}:{line}:13\n"
                    "error: could not compile `app` (lib) due to 1 previous error\n")
        if self.language == "typescript":
            return (f"{path}({line},13): error TS2322: Type 'string' is not assignable to "
                    "type 'number'.\n")
        if self.language == "go":
            return f"# example.com/app\n./{path}:{line}:13: undefined: handleRequest\n"
        return (f"src/fast.c:{line}:13: error: expected ';' before '}}' token\n"
                "make: *** [Makefile:12: build] Error 1\n")

    def build_ok(self) -> str:
        if self.language == "rust":
            return "   Compiling app v0.1.0\n    Finished `dev` profile target(s) in 2.31s\n"
        return ""


TOOLCHAINS: dict[str, Toolchain] = {
    "python": Toolchain(
        "python", ("src/app/api.py", "src/app/models.py", "src/app/cache.py", "src/app/retry.py"),
        "tests/test_api.py", "pytest -q tests/test_api.py",
        "pytest -q tests/test_cache.py::test_expiry", "make build", 2,
        "/usr/bin/time -v python scripts/bench_cache.py", "pip install -r requirements.txt"),
    "rust": Toolchain(
        "rust", ("src/lib.rs", "src/api.rs", "src/cache.rs", "src/retry.rs"),
        "tests/api.rs", "cargo test --test api", "cargo test cache::expiry", "cargo build", 101,
        "/usr/bin/time -v cargo run --release --bin bench", "cargo fetch"),
    "typescript": Toolchain(
        "typescript", ("src/api.ts", "src/models.ts", "src/cache.ts", "src/retry.ts"),
        "src/api.test.ts", "npx jest src/api.test.ts", "npx jest src/cache.test.ts -t expiry",
        "npx tsc --noEmit", 2, "/usr/bin/time -v node dist/bench.js", "npm install"),
    "go": Toolchain(
        "go", ("api.go", "models.go", "cache.go", "retry.go"),
        "api_test.go", "go test ./... -run TestAPI", "go test ./cache -run TestExpiry",
        "go build ./...", 1, "/usr/bin/time -v go run ./cmd/bench", "go mod download"),
}


def gnu_time_report(command: str, peak_kib: int, seconds: float) -> str:
    """The ``/usr/bin/time -v`` block a run leaves on stderr (peak RSS in kbytes)."""
    return (f'\tCommand being timed: "{command.removeprefix("/usr/bin/time -v ")}"\n'
            f"\tUser time (seconds): {seconds * 0.8:.2f}\n"
            f"\tSystem time (seconds): {seconds * 0.1:.2f}\n"
            f"\tElapsed (wall clock) time (h:mm:ss or m:ss): 0:{seconds:05.2f}\n"
            f"\tMaximum resident set size (kbytes): {peak_kib}\n"
            "\tExit status: 0\n")


INSTALL_FAILURE = ("error: failed to download from registry: Connection reset by peer "
                   "(os error 104)\n")
