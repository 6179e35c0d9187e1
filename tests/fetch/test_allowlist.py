"""The server-side request forgery guard and query parsing, without any network."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds_service.fetch import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_PAGES,
    DEFAULT_TIMEOUT,
    Allowlist,
    DataUnavailable,
    FhirFetcher,
    is_under,
    parse_query,
)
from cds_service.fetch.client import ParsedQuery

EHR = "https://ehr.example.org/fhir"


@pytest.mark.parametrize(
    "url",
    [
        EHR,
        EHR + "/",
        EHR + "/R4",
        "https://ehr.example.org:443/fhir/R4",
        "https://EHR.example.org/fhir",
    ],
)
def test_urls_under_a_prefix_are_allowed(url: str) -> None:
    assert Allowlist([EHR]).allows(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://ehr.example.org/fhir-evil",
        "https://ehr.example.org/",
        "https://ehr.example.org/other/fhir",
        "http://ehr.example.org/fhir",
        "https://ehr.example.org:8443/fhir",
        "https://ehr.example.org.evil.com/fhir",
        "https://evil.com/ehr.example.org/fhir",
        "https://user@ehr.example.org/fhir",
        "https://ehr.example.org@evil.com/fhir",
        "https://ehr.example.org/fhir/../admin",
        "https://ehr.example.org/fhir/%2e%2e/admin",
        "https://ehr.example.org/fhir%2fx",
        "https://ehr.example.org/fhir\\..\\admin",
        "https://ehr.example.org/fhir#frag",
        "https://ehr.example.org/fhir?x=1",
        "ftp://ehr.example.org/fhir",
        "ehr.example.org/fhir",
        "",
        "http://127.0.0.1/fhir",
    ],
)
def test_urls_not_under_a_prefix_are_refused(url: str) -> None:
    assert not Allowlist([EHR]).allows(url)


def test_root_prefix_allows_the_whole_origin() -> None:
    allowlist = Allowlist(["https://ehr.example.org/"])
    assert allowlist.allows("https://ehr.example.org/any/path")
    assert not allowlist.allows("https://ehr.example.org:444/any/path")


def test_per_call_extras_widen_only_that_check() -> None:
    allowlist = Allowlist()
    assert not allowlist.enabled
    assert allowlist.allows(EHR + "/R4", extra=[EHR])
    assert not allowlist.allows(EHR, extra=["not a url", "https://ehr.example.org/fhir?x=1"])
    assert not allowlist.allows(EHR)


@pytest.mark.parametrize(
    "prefix", ["ehr.example.org", "https://u:p@ehr.example.org", "https://ehr/fhir?x=1", "x"]
)
def test_malformed_prefixes_are_configuration_errors(prefix: str) -> None:
    with pytest.raises(ValueError, match="entry 2"):
        Allowlist([EHR, prefix])


def test_from_env_parses_a_comma_list() -> None:
    allowlist = Allowlist.from_env(True, f" {EHR} ,, https://other.example.org/r4 ,")
    assert allowlist.prefixes == (EHR, "https://other.example.org/r4")
    assert allowlist.allows("https://other.example.org/r4/")
    assert not allowlist.allow_loopback
    assert not allowlist.allows("http://localhost:8080/fhir")


def test_from_env_in_production_requires_https_except_loopback() -> None:
    with pytest.raises(ValueError, match="https"):
        Allowlist.from_env(True, "http://ehr.example.org/fhir")
    assert Allowlist.from_env(True, "http://127.0.0.1:9000/fhir").allows(
        "http://127.0.0.1:9000/fhir"
    )
    assert Allowlist.from_env(False, "http://ehr.example.org/fhir").allows(
        "http://ehr.example.org/fhir"
    )


def test_from_env_empty_is_off_in_production_and_loopback_in_dev() -> None:
    for value in (None, "", " , "):
        assert not Allowlist.from_env(True, value).enabled
        dev = Allowlist.from_env(False, value)
        assert dev.enabled
        for url in (
            "http://127.0.0.1:8080/fhir",
            "http://127.3.4.5/fhir",
            "http://localhost:1/x",
            "https://[::1]:8443/fhir",
        ):
            assert dev.allows(url), url
        for url in ("http://10.0.0.1/fhir", "http://169.254.169.254/", "http://localhost.evil/"):
            assert not dev.allows(url), url


def test_is_under_accepts_queries_but_not_other_paths() -> None:
    assert is_under(EHR + "/Observation?_getpages=abc&_offset=2", EHR)
    assert is_under(EHR + "/Observation?x=http://evil.com/", EHR)
    assert not is_under("https://ehr.example.org/fhirx/Observation", EHR)
    assert not is_under("https://ehr.example.org/fhir/../Observation", EHR)


@pytest.mark.parametrize(
    ("query", "parsed"),
    [
        ("Patient/123", ParsedQuery("read", "Patient", "123")),
        ("Patient/a-b.c", ParsedQuery("read", "Patient", "a-b.c")),
        ("Patient/1/_history/2", ParsedQuery("read", "Patient", "1")),
        ("Patient/123?_elements=id", ParsedQuery("read", "Patient", "123")),
        ("Condition?patient=1&clinical-status=active", ParsedQuery("search", "Condition", None)),
        (
            "Observation?patient=1&code=http://loinc.org|14685-2,http://loinc.org|2132-9",
            ParsedQuery("search", "Observation", None),
        ),
        ("Patient/1/Observation?code=x", ParsedQuery("search", "Observation", None)),
        ("Observation", ParsedQuery("search", "Observation", None)),
    ],
)
def test_reads_and_searches_are_recognised(query: str, parsed: ParsedQuery) -> None:
    assert parse_query(query) == parsed


@pytest.mark.parametrize(
    "query",
    [
        "",
        "patient/1",
        "Patient/",
        "Patient/..",
        "Patient/1/$everything",
        "Patient/1/_history",
        "metadata",
        "Patient/1\n",
        "Patient/1 2",
        "Patient:x/1",
    ],
)
def test_other_queries_are_refused(query: str) -> None:
    assert parse_query(query) is None


@given(st.text(alphabet=st.sampled_from("Pat/.?:%#\\@ab1-_=&"), max_size=30))
def test_an_accepted_query_never_leaves_the_base(query: str) -> None:
    if parse_query(query) is not None:
        assert is_under(f"{EHR}/{query}", EHR)


def test_defaults_match_the_service_budget() -> None:
    fetcher = FhirFetcher(Allowlist())
    assert (fetcher.timeout, fetcher.deadline, fetcher.max_pages) == (2.0, 4.0, 10)
    assert (DEFAULT_TIMEOUT, DEFAULT_DEADLINE, DEFAULT_MAX_PAGES) == (2.0, 4.0, 10)
    with pytest.raises(ValueError):
        FhirFetcher(Allowlist(), max_pages=0)


def test_data_unavailable_is_the_hook_layers_type() -> None:
    from cds_service.hooks import prefetch

    assert DataUnavailable is prefetch.DataUnavailable
    error = DataUnavailable({"b": "FHIR server answered 500", "a": "timed out after 2.0 s"})
    assert error.details == {"b": "FHIR server answered 500", "a": "timed out after 2.0 s"}
