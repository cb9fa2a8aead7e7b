#!/usr/bin/env python3
"""Summarise a `make test` run: stage results plus every JUnit file in the results dir.

Prints the failures by name, then the last line "N passed, N failed" (skipped tests are
reported separately and count as failures: a skipped test did not prove anything).
Exit status 1 when anything failed or nothing ran.
"""
import pathlib
import sys
import xml.etree.ElementTree as ET


def main() -> int:
    results = pathlib.Path(sys.argv[1])
    passed, failed, skipped = [], [], []
    stages = results / "stages.txt"
    if stages.exists():
        for line in stages.read_text().splitlines():
            verdict, name = line.split(" ", 1)
            (passed if verdict == "pass" else failed).append(f"check {name}")
    for xml in sorted(results.glob("*.xml")):
        suite = xml.stem
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError as e:
            failed.append(f"{suite}: unreadable results ({e})")
            continue
        for case in root.iter("testcase"):
            name = f"{suite}: {case.get('classname', '')}::{case.get('name', '')}".replace(
                ": ::", ": ")
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(name)
            elif case.find("skipped") is not None:
                # ctest marks "not run" as skipped too; either way nothing was proven.
                skipped.append(name)
            else:
                passed.append(name)
    for name in failed:
        print(f"FAILED  {name}")
    for name in skipped:
        print(f"SKIPPED {name} (counted as failed)")
    total_failed = len(failed) + len(skipped)
    if not passed and not total_failed:
        print("0 passed, 1 failed (no test ran)")
        return 1
    print(f"{len(passed)} passed, {total_failed} failed")
    return 1 if total_failed else 0


if __name__ == "__main__":
    sys.exit(main())
