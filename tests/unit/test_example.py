from __future__ import annotations

from pathlib import Path

from stopper.app.intake import parse_report
from stopper.registry import load_registry

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "report.json"


def test_the_readme_example_is_a_valid_report() -> None:
    report = parse_report(EXAMPLE.read_bytes(), load_registry())
    assert len(report.transfers) == 3
