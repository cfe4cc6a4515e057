#!/usr/bin/env python3
"""Summarise a kosoku (Autobahn TestSuite) report and judge it.

Reads the `index.json` that kosoku (or wstest) writes into a report folder
(one or several folders: run.sh runs kosoku once per section), plus the
per-case JSON files of the cases that need explaining, and:

* prints a count of cases per `behavior` and per `behaviorClose`;
* lists every case whose behavior or closing behavior is not OK or
  INFORMATIONAL, with its description and kosoku's explanation;
* lists the cases that were selected but have no result;
* writes a compact, diff-friendly `results.json` (case id -> behavior,
  behaviorClose, remoteCloseCode), one case per line, in case order.

Exit status: 0 when every selected case ran and passed, 1 when some case
did not pass (FAILED, NON-STRICT, UNIMPLEMENTED, ERROR, or a closing
behavior other than OK/INFORMATIONAL), 2 when the report is missing or
cases are missing from it.

The expected case list is computed from kosoku's own case index
(`kosoku.cases.CASES`), so this must run with the Python that has kosoku
installed (autobahn/.venv/bin/python); with --expected-count N it does not
need kosoku at all.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import sys
from collections import Counter
from typing import Any

# Verdicts that count as a pass. NON-STRICT is "conformant but ignores a
# SHOULD": wscast aims for strict, so it fails the run.
PASS_BEHAVIOR = {"OK", "INFORMATIONAL"}
PASS_CLOSE = {"OK", "INFORMATIONAL"}

BEHAVIOR_ORDER = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "ERROR"]
CLOSE_ORDER = ["OK", "INFORMATIONAL", "WRONG CODE", "UNCLEAN", "FAILED BY CLIENT", "FAILED"]


def sort_key(case_id: str) -> list[int]:
    """1.2.10 after 1.2.9 (numeric, as kosoku orders them)."""
    try:
        return [int(p) for p in case_id.split(".")]
    except ValueError:
        return [1 << 30]


def matches(case_id: str, pattern: str) -> bool:
    """Case selection as used with kosoku's -i/-x: `N.*` is the section N
    (a prefix match), anything else is an exact id or an fnmatch glob."""
    if pattern.endswith(".*") and "*" not in pattern[:-2] and "?" not in pattern:
        prefix = pattern[:-2]
        return case_id == prefix or case_id.startswith(prefix + ".")
    return fnmatch.fnmatchcase(case_id, pattern)


def expected_cases(include: list[str], exclude: list[str]) -> list[str]:
    from kosoku.cases import CASES  # imported late: only needed here

    selected = [
        c
        for c in CASES
        if (not include or any(matches(c, p) for p in include))
        and not any(matches(c, p) for p in exclude)
    ]
    return sorted(selected, key=sort_key)


def load_index(report_dirs: list[str]) -> dict[str, dict[str, Any]]:
    """Merge the index.json of every report folder, and every agent in each,
    into case id -> index entry (plus the folder it came from).

    There is one agent per run normally (kosoku names it after the server's
    `Server` header, or the address when none came back, e.g. after a crash),
    so several agents are worth a note."""
    merged: dict[str, dict[str, Any]] = {}
    agents: set[str] = set()
    for report_dir in report_dirs:
        path = os.path.join(report_dir, "index.json")
        if not os.path.exists(path):
            print(f"note: no report in {report_dir}")
            continue
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
        for agent, cases in index.items():
            agents.add(agent)
            for case_id, entry in cases.items():
                merged[case_id] = dict(entry, agent=agent, dir=report_dir)
    if len(agents) > 1:
        print(f"note: the reports name {len(agents)} agents: {', '.join(sorted(agents))}")
    return merged


def case_details(entry: dict[str, Any]) -> dict[str, Any]:
    path = os.path.join(entry["dir"], entry.get("reportfile", ""))
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def one_line(text: str, limit: int = 160) -> str:
    """Case descriptions carry HTML and newlines: flatten them for a terminal."""
    text = re.sub(r"<br\s*/?>", " ", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def counts_table(title: str, counts: Counter, order: list[str]) -> str:
    keys = order + sorted(k for k in counts if k not in order)
    width = max(len(k) for k in keys)
    lines = [title]
    for k in keys:
        lines.append(f"  {k:<{width}}  {counts.get(k, 0):>4}")
    lines.append(f"  {'total':<{width}}  {sum(counts.values()):>4}")
    return "\n".join(lines)


def write_results(path: str, meta: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    """One case per line so `git diff` shows exactly which cases changed."""
    lines = ["{"]
    for key, value in meta.items():
        lines.append(f"  {json.dumps(key)}: {json.dumps(value, sort_keys=True)},")
    lines.append('  "cases": {')
    ids = sorted(results, key=sort_key)
    for i, case_id in enumerate(ids):
        comma = "," if i + 1 < len(ids) else ""
        lines.append(f"    {json.dumps(case_id)}: {json.dumps(results[case_id])}{comma}")
    lines.append("  }")
    lines.append("}")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report_dirs", nargs="+", metavar="REPORT_DIR",
                    help="folder(s) holding a kosoku/wstest index.json")
    ap.add_argument("-i", "--include", action="append", default=[], metavar="CASE")
    ap.add_argument("-x", "--exclude", action="append", default=[], metavar="CASE")
    ap.add_argument(
        "--expected-count",
        type=int,
        default=None,
        help="expected number of cases (default: computed from kosoku's case index)",
    )
    ap.add_argument("--results", metavar="FILE", help="write the compact results.json here")
    ap.add_argument("--tool", default="", help="recorded in results.json (e.g. 'kosoku 0.1.0')")
    args = ap.parse_args()

    if args.expected_count is not None:
        expected: list[str] | None = None
        expected_n = args.expected_count
    else:
        expected = expected_cases(args.include, args.exclude)
        expected_n = len(expected)

    index = load_index(args.report_dirs)
    if not index:
        print(f"FAIL: no results: no index.json with cases in {' '.join(args.report_dirs)}")
        print(f"autobahn: 0 passed, {expected_n} failed")
        return 2

    behavior = Counter(e["behavior"] for e in index.values())
    close = Counter(e["behaviorClose"] for e in index.values())
    print(counts_table("behavior:", behavior, BEHAVIOR_ORDER))
    print(counts_table("behaviorClose:", close, CLOSE_ORDER))

    bad = [
        c
        for c in sorted(index, key=sort_key)
        if index[c]["behavior"] not in PASS_BEHAVIOR
        or index[c]["behaviorClose"] not in PASS_CLOSE
    ]
    if bad:
        print(f"\n{len(bad)} case(s) not OK/INFORMATIONAL:")
        for c in bad:
            e = index[c]
            d = case_details(e)
            print(
                f"  {c:<8} behavior={e['behavior']} behaviorClose={e['behaviorClose']}"
                f" remoteCloseCode={e.get('remoteCloseCode')}"
            )
            if d.get("description"):
                print(f"           case:   {one_line(d['description'])}")
            if d.get("result"):
                print(f"           result: {one_line(d['result'])}")
            if d.get("resultClose") and d.get("resultClose") != d.get("result"):
                print(f"           close:  {one_line(d['resultClose'])}")

    missing: list[str] = []
    unexpected: list[str] = []
    if expected is not None:
        missing = [c for c in expected if c not in index]
        unexpected = sorted(set(index) - set(expected), key=sort_key)
        if unexpected:
            print(f"\nnote: {len(unexpected)} case(s) in the report were not selected: "
                  + " ".join(unexpected[:20]))
    ran = len(index) - len(unexpected)

    if args.results:
        meta = {
            "tool": args.tool,
            "selection": {"include": args.include, "exclude": args.exclude},
            "summary": {
                "expected": expected_n,
                "ran": ran,
                "behavior": dict(sorted(behavior.items())),
                "behaviorClose": dict(sorted(close.items())),
            },
        }
        results = {
            c: {
                "behavior": e["behavior"],
                "behaviorClose": e["behaviorClose"],
                "remoteCloseCode": e.get("remoteCloseCode"),
            }
            for c, e in index.items()
        }
        write_results(args.results, meta, results)
        print(f"\nwrote {args.results}")

    status = 0
    print()
    if expected_n == 0:
        print("FAIL: the case selection is empty")
        status = 2
    elif ran < expected_n or missing:
        print(f"FAIL: only {ran} of {expected_n} expected cases have a result")
        if missing:
            shown = " ".join(missing[:40]) + (" ..." if len(missing) > 40 else "")
            print(f"  missing: {shown}")
        status = 2
    if bad:
        print(f"FAIL: {len(bad)} of {len(index)} cases are not OK/INFORMATIONAL")
        status = status or 1
    if status == 0:
        print(f"PASS: all {ran} of {expected_n} cases OK or INFORMATIONAL")
    # The plain closing line that CI log readers understand.
    skip = set(unexpected)
    n_bad = sum(1 for c in bad if c not in skip)
    n_missing = max(len(missing), expected_n - ran)
    print(f"autobahn: {ran - n_bad} passed, {n_bad + n_missing} failed")
    return status


if __name__ == "__main__":
    sys.exit(main())
