"""Whether a FHIR search answer (a searchset Bundle, or one page of it) is the whole result.

Read wherever search Bundles arrive: in a hook's prefetch, from the fallback fetch, and in the
process that reads large pages. An answer the server says it cut short, or whose `total` counts
matches it does not hold, must never be read as a patient's whole record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service.clinical.raw import OBJECT

#: Why a search Bundle counts as partial: an OperationOutcome entry says results are missing.
PARTIAL_OUTCOME = "the search Bundle reports an error or truncated results (OperationOutcome)"
#: Why a search Bundle counts as partial: `total` counts matches it does not hold.
PARTIAL_TOTAL = "the search Bundle holds fewer matches than its total"

#: Issue types (FHIR IssueType) of a warning that the server left results out.
_TRUNCATING_CODES = frozenset({"incomplete", "too-costly", "throttled", "timeout"})


def is_match(entry: Any) -> bool:
    """Whether a Bundle entry counts towards a search's `total`: `_include`d resources and
    OperationOutcomes do not, whatever their `search.mode` says."""
    if not isinstance(entry, OBJECT):
        return False
    resource = entry.get("resource")
    if isinstance(resource, OBJECT) and resource.get("resourceType") == "OperationOutcome":
        return False
    search = entry.get("search")
    mode = search.get("mode", "match") if isinstance(search, OBJECT) else "match"
    return bool(mode == "match")


def match_count(entries: Any) -> int:
    """How many of a Bundle's entries count towards its `total`."""
    return sum(map(is_match, entries)) if isinstance(entries, list) else 0


def _says_truncated(issue: Mapping[str, Any]) -> bool:
    if issue.get("code") in _TRUNCATING_CODES:
        return True
    details = issue.get("details")
    texts = (issue.get("diagnostics"), details.get("text") if isinstance(details, OBJECT) else None)
    return any(isinstance(text, str) and "truncat" in text.lower() for text in texts)


def _reports_missing_results(outcome: Mapping[str, Any]) -> bool:
    """An outcome inside a search answer: information never withholds results, a warning only
    when it says so; any other severity (error, fatal, unreadable) is taken as withholding."""
    issues = outcome.get("issue", [])
    if not isinstance(issues, list):
        return True
    for issue in issues:
        severity = issue.get("severity") if isinstance(issue, OBJECT) else None
        if severity == "information":
            continue
        if severity == "warning" and not _says_truncated(issue):
            continue
        return True
    return False


def partial_outcome(entries: Any) -> str | None:
    """`PARTIAL_OUTCOME` when an OperationOutcome among a Bundle's entries says the search
    answer is not the whole result, else None."""
    for entry in entries if isinstance(entries, list) else ():
        resource = entry.get("resource") if isinstance(entry, OBJECT) else None
        if (
            isinstance(resource, OBJECT)
            and resource.get("resourceType") == "OperationOutcome"
            and _reports_missing_results(resource)
        ):
            return PARTIAL_OUTCOME
    return None


def total_of(bundle: Any) -> int | None:
    """A Bundle's `total`, if it is a count: an absent total promises nothing."""
    total = bundle.get("total") if isinstance(bundle, OBJECT) else None
    return total if isinstance(total, int) and not isinstance(total, bool) else None


def short_of_total(total: int | None, matches: int) -> str | None:
    """`PARTIAL_TOTAL` when a search's `total` counts more matches than were received and no
    further page will bring them."""
    return PARTIAL_TOTAL if total is not None and total > matches else None
