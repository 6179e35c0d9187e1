"""What every card shares: source, extension, links into the protocol page, the footer line.

Sources and audit data stay out of the card prose: citations are card `links` (absolute URLs
into the service's `/protocol` page, one anchor per source), the rule ids and versions are in
`extension` and `source.topic`, and the detail ends with one short footer line. The builder
makes the page URLs absolute with the service's base URL once per answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from cds_service.clinical.codes import code_index
from cds_service.clinical.facts import Evidence
from cds_service.clinical.regimen import Plan, Schedule, ScheduledPhase
from cds_service.fhir.medication_requests import coding, reference
from cds_service.protocol import Protocol
from cds_service.protocol.model import CodeEntry, Timing

JSON = dict[str, Any]

SOURCE_LABEL = "B12 CDS"
PROTOCOL_PATH = "/protocol"
SCHEDULE_PATH = "/schedule"
TOPIC_SYSTEM = "https://b12-cds.example.org/CodeSystem/protocol-profile"
OVERRIDE_SYSTEM = "https://b12-cds.example.org/CodeSystem/override-reason"
OVERRIDE_REASONS: tuple[JSON, ...] = (
    {"system": OVERRIDE_SYSTEM, "code": "patient-declines-injections",
     "display": "Patient declines injections"},
    {"system": OVERRIDE_SYSTEM, "code": "treated-elsewhere",
     "display": "Treated elsewhere"},
    {"system": OVERRIDE_SYSTEM, "code": "clinical-judgement",
     "display": "Clinical judgement"},
)  # fmt: skip
INDICATOR_ORDER = {"critical": 0, "warning": 1, "info": 2}
MAX_SUMMARY = 139
ORDER_HOOKS = ("order-select", "order-sign")
MAX_LINKS = 5


@dataclass(frozen=True)
class HookContext:
    """What the cards need from the hook call besides the plan."""

    hook: str
    patient_id: str
    user_id: str | None = None
    encounter_id: str | None = None
    #: Resources of `context.draftOrders` (order-select / order-sign).
    draft_orders: tuple[Mapping[str, Any], ...] = ()
    #: `context.selections` (order-select): only these drafts are checked.
    selections: tuple[str, ...] | None = None
    #: Optional data that could not be obtained, named in the treatment card.
    not_checked: tuple[str, ...] = ()
    authored_on: date | None = None
    #: The service's public base URL: `source.url` and links point at its pages.
    base_url: str = ""


def fit(*candidates: str, limit: int = MAX_SUMMARY) -> str:
    """The first candidate within `limit` characters, else the last one shortened."""
    for text in candidates:
        if len(text) <= limit:
            return text
    return candidates[-1][: limit - 1].rstrip() + "…"


def evidence_lines(items: Iterable[Evidence]) -> list[str]:
    """Short lines (what, date) without raw references, each once."""
    lines: list[str] = []
    for e in items:
        line = f"- {e.text}" + (f" ({e.date[:10]})" if e.date else "")
        if line not in lines:
            lines.append(line)
    return lines


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def short_date(day: date) -> str:
    """ "1 Dec": English month names whatever the locale (and without `date.strftime`, which
    costs tens of microseconds a call)."""
    return f"{day.day} {_MONTHS[day.month - 1]}"


def date_range(start: date, end: date) -> str:
    """ "1–7 Dec", "22 Dec–11 Jan"."""
    if (start.year, start.month) == (end.year, end.month):
        return f"{start.day}–{short_date(end)}"
    return f"{short_date(start)}–{short_date(end)}"


_SHORT_FREQUENCY = {("d", 1): "daily", ("d", 2): "alternate days", ("wk", 1): "weekly"}
_SHORT_FREQUENCY |= {("mo", 1): "monthly"}


def short_frequency(t: Timing) -> str:
    if t.frequency == 1 and t.period_max is None:
        known = _SHORT_FREQUENCY.get((t.period_unit, int(t.period)))
        if known and float(t.period).is_integer():
            return known
    unit = {"d": "days", "wk": "weeks", "mo": "months"}[t.period_unit]
    if t.frequency == 1 and t.period_max is not None:
        return f"every {t.period:g}–{t.period_max:g} {unit}"
    if t.frequency == 1:
        return f"every {t.period:g} {unit}"
    if t.period == 1:
        per = {"d": "daily", "wk": "weekly", "mo": "monthly"}[t.period_unit]
        return f"{t.frequency}× {per}"
    return f"{t.frequency}× every {t.period:g} {unit}"


#: Schedule texts kept per regimen and dates (a few per regimen and start day in use).
_SCHEDULE_TEXTS = 4096


def _schedule_key(schedule: Schedule) -> tuple[Any, ...]:
    """What a schedule's text depends on: its regimen (hence its phases), lifelong or not, and
    its dates."""
    return (
        schedule.regimen_id,
        schedule.lifelong,
        tuple((p.index, p.start, p.end) for p in schedule.phases),
    )


class CardParts:
    """Holds the protocol and its code index; every method is pure given its arguments, so the
    schedule texts (phase lines, shapes) are memoised per regimen and dates."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.codes = code_index(protocol)
        self._phase_lines: dict[tuple[Any, ...], tuple[str, ...]] = {}
        self._shapes: dict[tuple[Any, ...], str] = {}

    def source(self, plan: Plan) -> JSON:
        a = plan.assessment
        p = self.protocol
        return {
            "label": SOURCE_LABEL,
            "url": PROTOCOL_PATH,
            "topic": {
                "system": TOPIC_SYSTEM,
                "code": a.profile_name,
                "display": f"{a.profile_name} v{a.profile.version}, protocol {p.version}",
            },
        }

    def extension(self, plan: Plan, kind: str, extra_rules: Iterable[str] = ()) -> JSON:
        a = plan.assessment
        rules = list(plan.rule_ids) + [r for r in extra_rules if r not in plan.rule_ids]
        return {
            "rules": rules,
            "card": kind,
            "profile": a.profile_name,
            "profileVersion": a.profile.version,
            "protocol": self.protocol.id,
            "protocolVersion": self.protocol.version,
            "status": a.status,
        }

    def links(self, citation_keys: Iterable[str], first: Iterable[JSON] = ()) -> list[JSON]:
        """`first` (e.g. the schedule page), then each cited source once, as protocol anchors."""
        out = list(first)
        seen: set[str] = set()
        for key in citation_keys:
            source = self.protocol.sources.sources.get(key)
            if key in seen or source is None:
                continue
            seen.add(key)
            out.append(
                {
                    "label": source.label or key,
                    "url": f"{PROTOCOL_PATH}#source-{key}",
                    "type": "absolute",
                }
            )
        return out[:MAX_LINKS]

    @staticmethod
    def rule_link(rule_id: str) -> JSON:
        return {"label": f"Rule {rule_id}", "url": f"{PROTOCOL_PATH}#{rule_id}", "type": "absolute"}

    def footer(self, plan: Plan, extra_rules: Iterable[str] = ()) -> str:
        a = plan.assessment
        rules = [*plan.rule_ids, *(r for r in extra_rules if r not in plan.rule_ids)]
        return (
            f"Rules {', '.join(rules) or 'none'} · {a.profile_name} {a.profile.version} · "
            f"protocol {self.protocol.version}"
        )

    def card(
        self,
        plan: Plan,
        kind: str,
        indicator: str,
        summary: str,
        detail: list[str],
        new_id: Callable[[], str],
        suggestions: list[JSON] | None = None,
        *,
        citations: Iterable[str] = (),
        override: bool = False,
        selection: str = "at-most-one",
        extra_rules: Iterable[str] = (),
        first_links: Iterable[JSON] = (),
    ) -> JSON:
        text = "\n".join(detail).strip()
        footer = self.footer(plan, extra_rules)
        out: JSON = {
            "uuid": new_id(),
            "summary": fit(summary),
            "detail": f"{text}\n\n{footer}" if text else footer,
            "indicator": indicator,
            "source": self.source(plan),
        }
        if suggestions:
            out["suggestions"] = suggestions
            out["selectionBehavior"] = selection
        if override:
            out["overrideReasons"] = [dict(r) for r in OVERRIDE_REASONS]
        links = self.links(citations, first_links)
        if links:
            out["links"] = links
        out["extension"] = self.extension(plan, kind, extra_rules)
        return out

    # -- results set aside (D9) ----------------------------------------------------------------

    def title_of(self, analyte: str) -> str:
        spec = self.protocol.observations.analytes.get(analyte)
        return spec.title if spec else analyte

    def set_aside_lines(self, plan: Plan) -> list[str]:
        """Results no rule used, each with its reason (protocol D9): never silently dropped."""
        a = plan.assessment
        lines: list[str] = []
        if a.unusable:
            lines += ["", "**Not usable** (set aside, never a reason to treat)"]
            lines += [
                f"- {self.title_of(r.analyte)} {r.shown} ({r.date_text})"
                + (f": {r.problem}" if r.problem and r.problem not in r.shown else "")
                for r in a.unusable
            ]
        if a.stale:
            days = a.profile.result_recency_days
            lines += ["", f"**Stale** (older than {days} days or undated, not used)"]
            lines += [f"- {self.title_of(r.analyte)} {r.shown} ({r.date_text})" for r in a.stale]
        return lines

    # -- schedules ---------------------------------------------------------------------------

    def route_short(self, route_id: str) -> str:
        route = self.protocol.regimens.routes[route_id]
        return route.short or route_id

    def phase_words(self, p: ScheduledPhase, *, with_dose: bool = True) -> str:
        """ "1000 mcg IM daily ×7"."""
        phase = p.phase
        words = f"{phase.dose_ug:g} mcg {self.route_short(phase.route)} " if with_dose else ""
        words += short_frequency(phase.timing)
        if phase.timing.count:
            words += f" ×{phase.timing.count}"
        return words

    def phase_lines(self, schedule: Schedule) -> list[str]:
        """One line per phase with its dates: "1–7 Dec: 1000 mcg IM daily ×7"."""
        key = _schedule_key(schedule)
        lines = self._phase_lines.get(key)
        if lines is None:
            lines = tuple(self._dated_lines(schedule))
            _remember(self._phase_lines, key, lines)
        return list(lines)

    def _dated_lines(self, schedule: Schedule) -> list[str]:
        lines = []
        for p in schedule.phases:
            if p.end is None:
                when = f"From {short_date(p.start)}"
                tail = ", lifelong" if schedule.lifelong else ""
            else:
                when = date_range(p.start, p.end)
                tail = ""
                if p.phase.maintenance:
                    tail = ", then review the cause"
            note = ""
            if p.phase.condition:
                note = f" ({p.phase.condition_label or 'conditional'})"
            lines.append(f"- {when}: {self.phase_words(p)}{tail}{note}")
        return lines

    def shape(self, schedule: Schedule) -> str:
        """The schedule's shape for a summary or label: "1000 mcg IM daily ×7, then monthly"."""
        key = _schedule_key(schedule)
        words = self._shapes.get(key)
        if words is None:
            words = self._shape(schedule)
            _remember(self._shapes, key, words)
        return words

    def _shape(self, schedule: Schedule) -> str:
        first, last = schedule.phases[0], schedule.phases[-1]
        words = self.phase_words(first)
        if last is not first:
            same = (last.phase.dose_ug, last.phase.route) == (
                first.phase.dose_ug,
                first.phase.route,
            )
            words += f", then {self.phase_words(last, with_dose=not same)}"
        return words

    def schedule_link(self, plan: Plan, schedule: Schedule) -> JSON:
        lifelong = "lifelong" if schedule.lifelong else "review"
        query = (
            f"regimen={schedule.regimen_id}&profile={plan.assessment.profile_name}"
            f"&start={schedule.phases[0].start.isoformat()}&end={lifelong}"
        )
        return {
            "label": "Schedule & calendar",
            "url": f"{SCHEDULE_PATH}?{query}",
            "type": "absolute",
        }

    # -- suggestions -------------------------------------------------------------------------

    def service_request(
        self,
        plan: Plan,
        ctx: HookContext,
        test: CodeEntry,
        text: str,
        reason: str,
        when: date | None = None,
    ) -> JSON:
        """A proposed laboratory test (draft), coded with the protocol's verified LOINC entry."""
        request: JSON = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "proposal",
            "code": {"coding": [coding(self.protocol, test)], "text": text},
            "subject": {"reference": f"Patient/{ctx.patient_id}"},
            "authoredOn": (ctx.authored_on or plan.start).isoformat(),
            "reasonCode": [{"text": reason}],
        }
        if when is not None:
            request["occurrenceDateTime"] = when.isoformat()
        if ctx.user_id and "/" in ctx.user_id:
            request["requester"] = {"reference": ctx.user_id}
        if ctx.encounter_id:
            request["encounter"] = reference(ctx.encounter_id, "Encounter")
        return request


def _remember(memo: dict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any) -> None:
    if len(memo) >= _SCHEDULE_TEXTS:
        memo.clear()  # start days move on: the old ones are not asked for again
    memo[key] = value


def absolute(cards: list[JSON], base_url: str) -> list[JSON]:
    """Page paths in `source.url` and `links` made absolute with the service's base URL."""
    base = base_url.rstrip("/")
    for card in cards:
        source = card["source"]
        if source["url"].startswith("/"):
            source["url"] = base + source["url"]
        for link in card.get("links", ()):
            if link["url"].startswith("/"):
                link["url"] = base + link["url"]
    return cards
