"""Azure Load Testing's results of a Locust run, turned into the per-request records the analysis
reads (loadtests.analysis), and the request names (labels) that make that possible.

What the service returns (Microsoft Learn, "Export test results from Azure Load Testing for use
in third-party tools", how-to-export-test-results.md, ms.date 02/08/2024): one CSV file per
test engine instance, in the Apache JMeter CSV log format, with the columns of COLUMNS (the
documented sample's header, in its order); `az load test-run download-files --result` saves the
run's results file (a zip; the names of the CSVs inside are not documented). JMeter's
`timeStamp` is the sample's start in epoch milliseconds (bin/jmeter.properties sets
`sampleresult.timestamp.start=true`), `elapsed` its duration in whole milliseconds.

The columns hold no HTTP method, no serving region and none of our outcomes beyond success or
failure. So on Azure Load Testing the locustfiles name each request by `label()` (switched on by
LOCUST_DETAILED_LABELS, which the test definition sets): "<METHOD> <path>", then " @<site>" when
the answer named its region (APP-SERVICE-SITE-NAME), then the request's TAGS in brackets, e.g.
" [retried]", " [replayed deliberate]". That the service writes Locust's request name into
`label` is an assumption (Locust's
own JMeter-format listener in locust-plugins does): a label `records()` cannot read is an error
that says so, never a silent guess.

Imported by the locustfiles too (through locust_support): the standard library only.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

# The documented header of a results file, in order.
COLUMNS = (
    "timeStamp", "elapsed", "label", "responseCode", "responseMessage", "threadName", "dataType",
    "success", "failureMessage", "bytes", "sentBytes", "grpThreads", "allThreads", "URL",
    "Latency", "IdleTime", "Connect",
)
# The columns a record is made of.
READ = ("timeStamp", "elapsed", "label", "responseCode", "success", "threadName")
# What a record says beyond success or failure (loadtests.analysis): its outcome when "lost" or
# "retried" (ok and fail come from `success`), "replayed" (the app answered from a stored
# Idempotency-Key answer) and "deliberate" (a replay the user asked for on purpose).
OUTCOME_TAGS = ("lost", "retried")
TAGS = (*OUTCOME_TAGS, "replayed", "deliberate")
LABEL = re.compile(
    r"(?P<method>[A-Z]+) (?P<name>\S+)(?: @(?P<site>\S+))?"
    rf"(?: \[(?P<tags>(?:{'|'.join(TAGS)})(?: (?:{'|'.join(TAGS)}))*)\])?"
)


class AltResultsError(Exception):
    """Results that cannot be read as Azure Load Testing's Locust results."""


def label(method: str, name: str, site: str | None, tags: Iterable[str]) -> str:
    """The request name a locustfile reports on Azure Load Testing (the results' `label`);
    of `tags`, those in TAGS count."""
    given = set(tags)
    kept = " ".join(tag for tag in TAGS if tag in given)
    return f"{method} {name}" + (f" @{site}" if site else "") + (f" [{kept}]" if kept else "")


def name_of(text: str) -> str:
    """The request's own name (its path pattern) in a label; any other text as it is."""
    match = LABEL.fullmatch(text)
    return match["name"] if match else text


def record(row: dict, where: str) -> dict:
    """One results row as a per-request record (no item, token or content: the results carry
    none, so the items cannot be reconciled from them)."""
    match = LABEL.fullmatch(row["label"])
    if match is None:
        raise AltResultsError(
            f"{where}: label {row['label']!r} is not '<METHOD> <path> [@site] [[tags]]':"
            " was the test run with LOCUST_DETAILED_LABELS=1 (the azure_load_testing definition"
            " sets it)?"
        )
    try:
        start_ms, elapsed = int(row["timeStamp"]), float(row["elapsed"])
    except ValueError:
        raise AltResultsError(
            f"{where}: timeStamp {row['timeStamp']!r} / elapsed {row['elapsed']!r} are not numbers"
        ) from None
    success = row["success"].strip().lower() == "true"
    code = row["responseCode"].strip()
    tags = (match["tags"] or "").split()
    outcome = next((tag for tag in tags if tag in OUTCOME_TAGS), "ok")
    return {
        "t": start_ms / 1000,
        "method": match["method"],
        "name": match["name"],
        # JMeter writes a text in place of a status when no answer came: no status then.
        "status": int(code) if code.isdigit() else 0,
        "ms": elapsed,
        "site": match["site"],
        "outcome": outcome if success else "fail",
        "item": None,
        "user": row["threadName"] or None,
        "token": None,
        **({"replayed": True} if "replayed" in tags else {}),
        **({"deliberate_replay": True} if "deliberate" in tags else {}),
    }


def records(text: str, where: str) -> list[dict]:
    """The records of one results CSV (`where` names it in errors)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [column for column in READ if column not in (reader.fieldnames or ())]
    if missing:
        raise AltResultsError(
            f"{where}: no column {', '.join(missing)} (an Azure Load Testing results CSV has"
            f" {', '.join(COLUMNS)})"
        )
    return [record(row, f"{where} line {reader.line_num}") for row in reader]


def results_files(path: Path) -> Iterator[tuple[str, str]]:
    """(name, text) of every CSV in `path`: a folder (searched through, zips in it opened) or
    the zip `az load test-run download-files --result` saved."""
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        yield from _zip_members(path)
    elif path.is_dir():
        for found in sorted(p for p in path.rglob("*") if p.is_file()):
            if found.suffix.lower() == ".csv":
                yield str(found.relative_to(path)), found.read_text(encoding="utf-8-sig")
            elif found.suffix.lower() == ".zip" and zipfile.is_zipfile(found):
                yield from _zip_members(found)
    else:
        raise AltResultsError(f"{path}: neither a folder nor a zip file of results")


def _zip_members(path: Path) -> Iterator[tuple[str, str]]:
    with zipfile.ZipFile(path) as archive:
        for member in sorted(archive.namelist()):
            if member.lower().endswith(".csv"):
                yield f"{path.name}:{member}", archive.read(member).decode("utf-8-sig")


def load(path: Path) -> dict[str, list[dict]]:
    """The records of every results CSV under `path`, by file (one per engine instance)."""
    found = {name: records(text, name) for name, text in results_files(path)}
    if not found:
        raise AltResultsError(f"{path}: no results CSV in it")
    return found


def csv_row(values: dict) -> str:
    """One results line (no line break) of `values` by column; absent columns stay empty."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(values.get(column, "") for column in COLUMNS)
    return out.getvalue()


def header() -> str:
    return csv_row({column: column for column in COLUMNS})
