"""What the API fuzzer (tests/security/test_fuzz.py) found, one focused test each: every one of these
answered an unexpected-error envelope (an unhandled exception) or JSON no strict parser reads."""

from __future__ import annotations

import json

import pytest

from tests.web.conftest import Caller

TASKS = "/sharing/rest/community/users/alice/tasks"
UNEXPECTED = "An unexpected error occurred on the server"


def strict(text: str) -> dict:
    """Parse as RFC 8259 JSON: bare NaN and Infinity are refused."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _create_task(alice: Caller, **fields: object) -> dict:
    body = {"title": "t", "type": "ExecuteNotebook", "itemId": alice.add_notebook(), "minute": "*/1",
            "hour": "*", "dayOfMonth": "*", "month": "*", "dayOfWeek": "?", **fields}  # fmt: skip
    return alice.post(TASKS + "/createTask", **body).json()


@pytest.mark.parametrize("field", ["startDate", "endDate", "maxOccurrences"])
def test_an_integer_past_64_bits_is_a_bad_parameter_not_a_database_overflow(alice: Caller, field: str):
    error = _create_task(alice, **{field: "99999999999999999999"})["error"]
    assert error["code"] == 400, error
    assert error["message"] == (
        f"Invalid value for '{field}': '99999999999999999999' (out of the 64-bit integer range)."
    )


def test_a_page_start_past_64_bits_is_a_bad_parameter(alice: Caller):
    answer = alice.get("/admin/services", start="99999999999999999999").json()
    assert answer["status"] == "error" and answer["code"] == 400, answer
    assert "out of the 64-bit integer range" in answer["messages"][0]
    assert alice.get("/admin/services", start=str(2**63 - 1)).json()["services"] == []  # the largest is fine


@pytest.mark.parametrize("field", ["startDate", "endDate"])
def test_a_task_date_past_year_9999_is_refused(alice: Caller, field: str):
    error = _create_task(alice, **{field: str(2**62)})["error"]  # fits 64 bits; no calendar reaches it
    assert error["code"] == 400 and "up to 253402300799999 (year 9999)" in error["message"], error
    assert _create_task(alice, endDate="253402300799999")["success"] is True


@pytest.mark.parametrize("value", ["1e400", "-1e400", "NaN", '"Infinity"'])
@pytest.mark.parametrize("name", ["asyncJobsCleanAgeHours", "maxExecuteNotebookTimeMinutes"])
def test_configuration_numbers_must_be_finite(admin: Caller, name: str, value: str):
    answer = admin.post("/admin/notebooks/configuration/update", configJSON=f'{{"{name}": {value}}}').json()
    assert answer == {"status": "error", "messages": [f"'{name}' must be a finite number."], "code": 400}
    current = strict(admin.get("/admin/notebooks/configuration").text)  # still valid JSON, unchanged
    assert current["maxExecuteNotebookTimeMinutes"] == 120 and current["asyncJobsCleanAgeHours"] == 6


@pytest.mark.parametrize("fmt", ["json", "pjson"])
def test_a_job_with_nan_parameters_still_answers_strict_json(alice: Caller, fmt: str):
    job_id = alice.execute(alice.add_notebook(), notebookParameters='{"a": NaN, "b": Infinity, "c": [1.5]}')[
        "jobId"
    ]
    for path in (f"/admin/notebooks/jobs/{job_id}", f"/admin/system/jobs/{job_id}"):
        view = strict(alice.get(path, f=fmt).text)
        assert view["inputs"]["notebookParameters"] == {"a": "NaN", "b": "Infinity", "c": [1.5]}
    assert UNEXPECTED not in alice.get("/admin/notebooks/jobs", detail="true", f=fmt).text
