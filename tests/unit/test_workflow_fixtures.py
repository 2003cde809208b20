from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from onceflow_operator.cli import main

ROOT = Path(__file__).resolve().parents[2]
ONBOARDING = ROOT / "examples" / "customer-onboarding"


def test_example_fixtures_pass_without_network() -> None:
    result = CliRunner().invoke(
        main,
        [
            "test",
            "-f",
            str(ONBOARDING),
            "-f",
            str(ROOT / "examples/common"),
            "--fixtures",
            str(ONBOARDING / "fixtures"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "4 passed, 0 failed" in result.output


def test_a_wrong_expectation_fails_and_says_where(tmp_path: Path) -> None:
    (tmp_path / "wrong.yaml").write_text(
        "input: {type: customer.approved, data: {company_name: A, tax_id: DE1234, currency: EUR,"
        " address: {country: DE, postal_code: '1'}}}\n"
        "responses: {'erp GET /api/resource/Customer': {status: 200, body: {data: []}}}\n"
        "expect: {outcome: completed, calls: [{connector: erp, method: DELETE}]}\n"
    )
    manifests = ["-f", str(ONBOARDING / "integration.yaml"), "-f", str(ONBOARDING / "syncpolicy.yaml")]
    result = CliRunner().invoke(main, ["test", *manifests, "--fixtures", str(tmp_path)])
    assert result.exit_code == 1
    assert "FAIL wrong" in result.output
    assert "expect.calls: expected 1 item(s)" in result.output


def test_an_empty_fixture_folder_fails(tmp_path: Path) -> None:
    manifests = ["-f", str(ONBOARDING / "integration.yaml"), "-f", str(ONBOARDING / "syncpolicy.yaml")]
    result = CliRunner().invoke(main, ["test", *manifests, "--fixtures", str(tmp_path)])
    assert result.exit_code == 1
