"""The clinical core is pure: no web framework and no HTTP client anywhere in its imports."""

from __future__ import annotations

import json
import subprocess
import sys

ADAPTERS = ("fastapi", "starlette", "uvicorn", "httpx", "aiohttp")


def test_the_clinical_core_imports_no_web_framework_or_http_client() -> None:
    code = (
        "import json, sys\n"
        "import cds_service.engine, cds_service.clinical.assessment, cds_service.clinical.regimen\n"
        "import cds_service.fhir.medication_requests\n"
        "print(json.dumps(sorted(m for m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(done.stdout)
    assert "cds_service.clinical.regimen" in loaded
    assert [m for m in loaded if m.split(".")[0] in ADAPTERS] == []
