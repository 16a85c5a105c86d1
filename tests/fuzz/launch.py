"""Runs fuzz targets as child processes and reads libFuzzer's final statistics.

    python -m tests.fuzz.launch [--minutes 10] [TARGET …]      # what `make fuzz` runs

Every atheris target runs in parallel (niced) from its seed corpus in tests/fuzz/corpus/<target>/ plus a
working corpus in .fuzz/<target>/ (git-ignored: what the fuzzer learned, kept between runs). A
crash, hang or memory blow-up is written to tests/fuzz/crashes/<target>/, where
tests/fuzz/test_fuzz.py replays it on every `make test` until it is fixed and the input becomes
a regression test. The SSRF guard's hypothesis properties (tests/fuzz/test_ssrf_property.py) run
alongside with the `fuzz` profile; hypothesis prints a falsifying URL and keeps it in .hypothesis/,
replaying it first on every later run. run_request's blobs go to a redis-server started here.
Prints executions per second and total executions per target.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.fuzz.targets import NAMES
from toolfabric_server.devstack.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
FUZZ = Path(__file__).resolve().parent
CORPUS = FUZZ / "corpus"
CRASHES = FUZZ / "crashes"
WORK = ROOT / ".fuzz"
# Per input: longer than this is a hang. The web targets get the fetch service's total timeout
# (20 s by default: a page may not take longer to read than to fetch); the rest get less.
TIMEOUT_S = {"web_page": 20, "web_pdf": 20}
DEFAULT_TIMEOUT_S = 10
RSS_LIMIT_MB = 1536
_STAT = re.compile(r"^stat::(\w+):\s*(\d+)", re.MULTILINE)


@dataclass
class Outcome:
    target: str
    seconds: float
    executions: int
    executions_per_s: int
    new_units: int
    peak_rss_mb: int
    returncode: int
    log: str
    artifacts: list[str]

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.artifacts


def command(target: str, seconds: float, work: Path, crashes: Path) -> list[str]:
    return [
        sys.executable, "-m", "tests.fuzz.engine", target,
        f"-max_total_time={int(seconds)}",
        f"-timeout={TIMEOUT_S.get(target, DEFAULT_TIMEOUT_S)}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        "-max_len=65536",
        "-print_final_stats=1",
        "-report_slow_units=1000000",  # a slow first input (imports, caches) is not a finding; -timeout is
        f"-artifact_prefix={crashes}/",
        str(work), str(CORPUS / target),
        # Earlier findings seed the search too: variants of a fixed bug are likely neighbours.
        *([str(CRASHES / target)] if (CRASHES / target).is_dir() else []),
    ]


def start(target: str, seconds: float, work: Path, crashes: Path, log: Path, nice: int = 0) -> subprocess.Popen[bytes]:
    work.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    handle = log.open("wb")
    return subprocess.Popen(command(target, seconds, work, crashes), cwd=ROOT, env=env, stdout=handle,
                            stderr=subprocess.STDOUT, preexec_fn=(lambda: os.nice(nice)) if nice else None)


def outcome(target: str, proc: subprocess.Popen[bytes], log: Path, crashes: Path, seconds: float,
            before: set[Path]) -> Outcome:
    text = log.read_text(errors="replace")
    stats = {k: int(v) for k, v in _STAT.findall(text)}
    artifacts = sorted(str(p) for p in set(crashes.iterdir()) - before) if crashes.exists() else []
    return Outcome(target, seconds, stats.get("number_of_executed_units", 0),
                   stats.get("average_exec_per_sec", 0), stats.get("new_units_added", 0),
                   stats.get("peak_rss_mb", 0), proc.returncode if proc.returncode is not None else -1,
                   str(log), artifacts)


def rescue(target: str, work: Path, crashes: Path) -> list[str]:
    """Inputs of the working corpus that fail the target, copied to `crashes`.

    For a target that died without writing its input (a signal in the middle of libFuzzer's crash
    report has happened once): the failing input is usually in the corpus it was mutating.
    """
    import importlib
    import shutil

    fuzz_one = importlib.import_module(f"tests.fuzz.targets.{target}").fuzz_one
    found = []
    for path in sorted(work.iterdir()) if work.is_dir() else []:
        try:
            fuzz_one(path.read_bytes())
        except Exception:
            found.append(str(shutil.copy(path, crashes / f"crash-{path.name}")))
    return found


def run(targets: list[str], seconds: float, crashes_root: Path, work_root: Path, nice: int = 0) -> list[Outcome]:
    """All targets at once; waits for the last one (libFuzzer stops itself at max_total_time)."""
    procs = []
    for target in targets:
        crashes = crashes_root / target
        crashes.mkdir(parents=True, exist_ok=True)
        before = set(crashes.iterdir())
        log = work_root / f"{target}.log"
        procs.append((target, start(target, seconds, work_root / target, crashes, log, nice), log, crashes, before))
    results = []
    for target, proc, log, crashes, before in procs:
        try:
            proc.wait(timeout=seconds + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        result = outcome(target, proc, log, crashes, seconds, before)
        if result.returncode != 0 and not result.artifacts:
            result.artifacts = rescue(target, work_root / target, crashes)
        results.append(result)
    return results


SSRF = "ssrf"
SSRF_EXAMPLES = 2000  # per property and round; rounds repeat with new seeds until the time is up


def run_ssrf(minutes: float, work: Path, nice: int) -> Outcome:
    log = work / f"{SSRF}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOOLFABRIC_FUZZ_PROFILE": "fuzz",
           "TOOLFABRIC_FUZZ_EXAMPLES": str(SSRF_EXAMPLES)}
    started = time.monotonic()
    returncode, passing, seed = 0, 0, 0
    with log.open("wb") as handle:
        while returncode == 0 and time.monotonic() - started < minutes * 60:
            seed += 1
            returncode = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout=0",
                 "--hypothesis-show-statistics", f"--hypothesis-seed={seed}", str(FUZZ / "test_ssrf_property.py")],
                cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, preexec_fn=lambda: os.nice(nice),
                check=False).returncode
    elapsed = time.monotonic() - started
    passing = sum(int(n) for n in re.findall(r"(\d+) passing", log.read_text(errors="replace")))
    return Outcome(SSRF, elapsed, passing, int(passing / elapsed), 0, 0, returncode, str(log), [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", default=[], choices=[[], *NAMES, SSRF], metavar="TARGET",
                        help="default: all")
    parser.add_argument("--minutes", type=float, default=10.0, help="per target, all running in parallel")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the fuzzing processes")
    args = parser.parse_args()
    targets = args.targets or [*NAMES, SSRF]
    WORK.mkdir(exist_ok=True)
    print(f"fuzzing {', '.join(targets)} for {args.minutes:g} min each, in parallel; logs in {WORK}/", flush=True)
    started = time.time()
    with RedisServer(WORK / "redis") as redis_server, ThreadPoolExecutor(1) as pool:
        os.environ["TOOLFABRIC_REDIS_URL"] = redis_server.url
        ssrf = pool.submit(run_ssrf, args.minutes, WORK, args.nice) if SSRF in targets else None
        results = run([t for t in targets if t != SSRF], args.minutes * 60, CRASHES, WORK, args.nice)
        if ssrf is not None:
            results.append(ssrf.result())
    print(f"{'target':<12} {'exec/s':>8} {'executions':>12} {'new units':>10} {'peak RSS MB':>12}  finding")
    for r in results:
        finding = "none" if r.ok else (", ".join(r.artifacts) or f"exit code {r.returncode}, see {r.log}")
        print(f"{r.target:<12} {r.executions_per_s:>8} {r.executions:>12} {r.new_units:>10} {r.peak_rss_mb:>12}  "
              f"{finding}")
    summary = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
               "results": [asdict(r) for r in results]}
    (WORK / "summary.json").write_text(json.dumps(summary, indent=2))
    if not all(r.ok for r in results):
        print("findings were written to tests/fuzz/crashes/<target>/: `make test` replays them until fixed")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
