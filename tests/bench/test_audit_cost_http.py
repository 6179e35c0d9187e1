"""`python -m bench --audit-cost --http`: two real servers, the audit on and off; every answer of
the audited one is stored, none of the other's, and the cost is worked out per round."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import audit_cost_http  # noqa: E402
from bench.__main__ import CASES, Env, Settings, case_inputs, run_load  # noqa: E402


def _turn(off_cpu: float, on_cpu: float, off_rps: float, on_rps: float) -> dict[str, object]:
    return {
        "order": "off,on",
        "off": {"rps": off_rps, "cpu_ms": off_cpu, "answers": 10, "non_200": 0},
        "on": {"rps": on_rps, "cpu_ms": on_cpu, "answers": 10, "non_200": 0},
    }


def test_the_cost_is_the_median_over_rounds_of_the_cpu_lost_per_answer() -> None:
    result = audit_cost_http.summarise(
        [_turn(2.0, 2.5, 500, 400), _turn(2.0, 2.2, 500, 450), _turn(2.0, 4.0, 500, 250)]
    )
    assert round(result["cpu_cost"], 3) == 0.2  # 1 - 2.0/2.5 is the middle round
    assert round(result["rps_cost"], 3) == 0.2
    assert result["met"] is False


def test_the_audited_server_stores_every_answer_and_the_other_none(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == "patient-view")
    settings = Settings(
        mode="test",
        duration_s=0.3,
        warmup_s=0.1,
        concurrency=(2,),
        client="raw",
        out=tmp_path,
        cases=("patient-view",),
    )
    body_file, _, _ = case_inputs(case, Env(), tmp_path, {})
    result = audit_cost_http.measure(
        lambda server: run_load(server, case, body_file, 2, settings),
        rounds=2,
        results_dir=tmp_path,
    )
    assert result["answers"]["on"] > 0 and result["answers"]["off"] > 0
    assert result["audit_records"] == {"on": result["answers"]["on"], "off": 0}
    assert audit_cost_http.problems(result) == []
