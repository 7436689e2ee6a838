"""Regenerate docs/reliability.md: run tests/reliability (pytest, JUnit XML) and the 20-kill torture benchmark,
and write one table row per test: what was tried, and the result.

    python benchmarks/reliability_report.py                 # tests + 20 kills (about 10 min on 2 cores)
    python benchmarks/reliability_report.py --kills 0       # tests only
"""

from __future__ import annotations

import argparse
import ast
import json
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests" / "reliability"
DOC = ROOT / "docs" / "reliability.md"

AREAS = {  # test file -> (section title, the requirement it proves)
    "test_torture": (
        "Crash and resume torture",
        ("SIGKILL at random moments and mid-checkpoint-write, resume, bit-identical final weights; every checkpoint "
        "on disk complete; SIGINT/SIGTERM save and exit after the current step"),
    ),
    "test_hostile_data": (
        "Hostile data corpus",
        ("every broken or malicious input used correctly or skipped and counted with its reason; summary printed; "
        "the run continues; archives never extracted and size-capped"),
    ),
    "test_divergence": (
        "Divergence",
        ("non-finite loss/gradient never applied; rollback + lower lr; stop after 3 with the last good checkpoint; "
        "collapse-signature warning"),
    ),
    "test_safe_loading": (
        "Safe loading",
        ("safetensors + validated JSON only; pickles refused unopened; tampered, truncated, mismatched files and "
        "byte-flip fuzz give one clear error"),
    ),
    "test_disk_full": (
        "Disk full",
        ("failed checkpoint writes (ENOSPC on a tmpfs, RLIMIT_FSIZE in a subprocess, injected): clear error or "
        "continue by option; the previous checkpoint intact and loadable"),
    ),
    "test_run_lock": (
        "One run, one writer",
        ("a second `ganime train` or `train --resume` on a run that is training refuses with one line naming the "
        "owner (pid, host, start time, command) and exit 2; the first run ends bit-identical to a lone run and "
        "resumable; readers never wait and see only complete checkpoints. A kill -9'd owner's lock is taken over "
        "with a message (crash and resume torture above); another host's needs --force-unlock "
        "(tests/test_runlock.py); under torchrun rank 0 holds it (tests/distributed)"),
    ),
    "test_api_fuzz": (
        "Web API",
        ("schemathesis over the app's OpenAPI schema (valid and invalid inputs): zero 5xx; 1,000 concurrent mixed "
        "requests: memory flat"),
    ),
}


NOTES = """## Limits and notes

- ganime never extracts archives: .zip/.tar members are read in memory, so a `../evil.png` member cannot land
  anywhere; such names are still refused and counted ("unsafe path in archive"). Reading stops after
  `--max-archive-mb` (default 16384) of uncompressed data; one member may not exceed 64 MiB.
- A chmod 000 file is readable by root: as root it is used (it is a valid image); the permission-denied path is
  tested by failing the reader's `open` for one file, and for real when the tests run as an ordinary user.
- The tmpfs test needs root and `mount`; elsewhere it is skipped and the RLIMIT_FSIZE subprocess test covers a
  real failing write.
- With fp16 loss scaling the GradScaler already skips steps with inf/NaN gradients; the guard then checks the
  losses only (a NaN loss still rolls back).
- No `--trust-pickle` import path exists: ganime has no loader for other tools' weights; every `.pt`, `.pth`,
  `.pkl`, `.pickle`, `.ckpt`, `.bin` file is refused unopened.
- The run lock (`RUN/train.lock`, runlock.py) is a `flock` plus the owner's pid, host, start time and command.
  The kernel drops the flock when its process dies, even by kill -9; the next trainer on that host takes the
  lock over with a warning. A network filesystem may not share flocks between hosts: a lock written on another
  host is then refused until `--force-unlock` (ganime cannot see whether that process still runs).
- Re-saving the same step (epoch end, then exit) swaps two directories with two renames; a kill between them
  leaves `latest.json` naming a missing checkpoint for which resume falls back, with a warning, to the newest
  complete one (tested: `latest_names_missing`).
"""


def describe_tests() -> dict[tuple[str, str], str]:
    """(file stem, test function) -> what the test tries: its docstring's first sentence, else its name."""
    out = {}
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                doc = ast.get_docstring(node)
                text = " ".join(doc.split()).split(". ")[0].rstrip(".") if doc else node.name[5:].replace("_", " ")
                out[(path.stem, node.name)] = text
    return out


def run_tests(xml: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTS), f"--junitxml={xml}"]
    code = subprocess.run(cmd, cwd=ROOT, check=False).returncode
    return code, time.perf_counter() - t0


def read_results(xml: Path) -> list[dict]:
    rows = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        stem = case.get("classname", "").split(".")[-1]
        name = case.get("name", "")
        outcome, note = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "FAILED", "error": "ERROR", "skipped": "skipped"}[tag]
                note = (el.get("message") or "").splitlines()[0][:160] if el.get("message") else ""
                break
        rows.append({"file": stem, "name": name, "seconds": float(case.get("time", 0)), "outcome": outcome,
                     "note": note})
    return rows


def run_torture(kills: int) -> dict | None:
    if kills <= 0:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "torture.json"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "torture.py"), "--kills", str(kills), "--json", str(out)]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        print(proc.stdout, proc.stderr[-2000:], sep="\n")
        return json.loads(out.read_text()) if out.is_file() else {"error": proc.stdout[-500:] + proc.stderr[-500:]}


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_doc(rows: list[dict], seconds: float, torture: dict | None, cpu: str) -> str:
    described = describe_tests()
    passed = sum(r["outcome"] == "passed" for r in rows)
    skipped = sum(r["outcome"] == "skipped" for r in rows)
    lines = [
        "# Reliability",
        "",
        "Never lose a run, never trust bad input (issue 9). Every row below is a test in `tests/reliability/`;",
        "this page is generated, do not edit it by hand. Regenerate it with",
        "",
        "    python benchmarks/reliability_report.py            # the tests + the 20-kill torture benchmark",
        "    python benchmarks/reliability_report.py --kills 0  # the tests only",
        "",
        (
            f"Last run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu}, "
            f"Python {platform.python_version()}: **{passed} passed, {skipped} skipped, "
            f"{len(rows) - passed - skipped} failed** of {len(rows)} in {seconds:.0f} s."
        ),
        "",
    ]
    if torture is not None:
        lines += ["## Torture benchmark (`python benchmarks/torture.py --kills 20`)", ""]
        if "error" in torture:
            lines += [f"The benchmark failed: `{cell(torture['error'])}`", ""]
        else:
            same = "bit-identical" if torture["identical"] else "DIFFERENT: " + ", ".join(torture["differing"][:5])
            lines += [
                (
                    f"A 16 px DCGAN (D dropout, so RNG state matters) with a checkpoint every step, SIGKILLed "
                    f"{torture['kills']} times ({torture['kills_during_write']} right at a checkpoint file write, "
                    "the rest at random moments), resumed after each kill, then compared with an uninterrupted run."
                ),
                "",
                (
                    "| kills | recovered (run dir clean, resumed) | problems after kills "
                    "| final weights, BN stats, Adam moments, RNG states | seconds |"
                ),
                "|---|---|---|---|---|",
                (
                    f"| {torture['kills']} | {torture['successes']}/{torture['kills']} | {len(torture['problems'])} "
                    f"| {same} | {torture['seconds']:.0f} |"
                ),
                "",
            ]
            sw = torture.get("second_writer")
            if sw:
                refused = sum(r["code"] == 2 and "is in use by another training run" in r["stderr"]
                              for r in sw["second"].values())
                lines += [
                    (
                        "Then a second writer: while a trainer is paused inside a checkpoint write, `ganime train` "
                        "and `ganime train --resume` on its run dir are started and a reader loads the run."
                    ),
                    "",
                    "| second writers refused (one line, exit 2) | reader got | first run's final weights | seconds |",
                    "|---|---|---|---|",
                    (
                        f"| {refused}/{len(sw['second'])} | {sw['read']['checkpoint']} (complete) in "
                        f"{sw['read']['seconds']:.2f} s | {'bit-identical to a lone run' if sw['identical'] else 'DIFFERENT'} "
                        f"| {sw['seconds']:.0f} |"
                    ),
                    "",
                ]
    for stem, (title, requirement) in AREAS.items():
        mine = [r for r in rows if r["file"] == stem]
        if not mine:
            continue
        lines += [f"## {title}", "", f"Requirement: {requirement}.", "", "| what was tried | result | s |",
                  "|---|---|---|"]
        for r in mine:
            func, _, param = r["name"].partition("[")
            what = described.get((stem, func), func)
            if param:
                what += f" [{param.rstrip(']')}]"
            result = r["outcome"] + (f": {r['note']}" if r["note"] and r["outcome"] != "passed" else "")
            lines.append(f"| {cell(what)} | {cell(result)} | {r['seconds']:.1f} |")
        lines.append("")
    DOC.write_text("\n".join(lines) + "\n" + NOTES)
    return DOC.read_text()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20, help="torture benchmark kills (0 = skip it)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from ganime.device import cpu_model

    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        code, seconds = run_tests(xml)
        rows = read_results(xml) if xml.is_file() else []
    torture = run_torture(args.kills)
    write_doc(rows, seconds, torture, cpu_model())
    print(f"wrote {DOC}")
    ok = code == 0 and (torture is None or (torture.get("identical") and not torture.get("problems")
                                            and torture.get("second_writer", {}).get("identical")))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
