from __future__ import annotations

from pathlib import Path

import pytest

from stopper.errors import ConfigurationError
from stopper.registry import InstitutionKind, load_registry


def test_packaged_registry_describes_how_to_reach_every_institution() -> None:
    registry = load_registry()
    assert len(registry.of_kind(InstitutionKind.BANK)) == 16
    assert len(registry.of_kind(InstitutionKind.PAYMENT_INSTITUTION)) == 28
    iso = {i.code for i in registry.values() if i.adapter == "iso20022"}
    assert iso == {"BK01", "BK02", "BK03", "BK04", "BK05", "BK06"}
    for institution in registry.values():
        assert institution.adapter in ("http_json", "iso20022")
        assert institution.endpoint == f"/institutions/{institution.code}"
        assert institution.timeout_ms > 0 and institution.concurrency > 0
        assert institution.retry.deadline_s > 0 and institution.callback_secret_ref
    assert len({i.callback_secret_ref for i in registry.values()}) == 44


def test_operators_can_point_at_their_own_file(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(
        """
[defaults.bank]
timeout_ms = 750
retry = { max_attempts = 3, initial_backoff_ms = 100, max_backoff_ms = 400, deadline_s = 30 }

[[institution]]
code = "XB1"
name = "Example Bank"
kind = "bank"
endpoint = "https://stops.example-bank.test/v1"
callback_secret_ref = "xb1"
concurrency = 2
"""
    )
    [institution] = load_registry(path).values()
    assert (institution.timeout_ms, institution.concurrency) == (750, 2)
    assert institution.retry.max_attempts == 3
    assert institution.endpoint.startswith("https://")


@pytest.mark.parametrize(
    "text",
    [
        "",
        '[[institution]]\ncode = "A1"\nname = "x"\nkind = "shop"\n',
        '[[institution]]\ncode = "A1"\nname = "x"\nkind = "bank"\nadapter = "fax"\n',
        '[[institution]]\ncode = "A1"\nname = "x"\nkind = "bank"\n' * 2,
        "not toml [",
    ],
)
def test_a_bad_registry_refuses_to_load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError):
        load_registry(path)


def test_an_iso20022_institution_takes_batches_and_an_http_json_one_does_not(
    tmp_path: Path,
) -> None:
    path = tmp_path / "registry.toml"
    entry = '[[institution]]\ncode = "{code}"\nname = "x"\nkind = "bank"\nadapter = "{adapter}"\n'
    path.write_text(
        entry.format(code="A1", adapter="iso20022")
        + entry.format(code="A2", adapter="iso20022")
        + "batch_size = 10\nbatch_window_ms = 2\nconcurrency = 3\n"
        + entry.format(code="A3", adapter="http_json")
    )
    registry = load_registry(path)
    assert (registry["A1"].batch_size, registry["A1"].batch_window_ms) == (50, 5.0)
    assert (registry["A2"].batch_size, registry["A2"].batch_window_ms) == (10, 2.0)
    assert registry["A2"].holds_in_flight == 30
    assert (registry["A3"].batch_size, registry["A3"].holds_in_flight) == (1, 8)


@pytest.mark.parametrize(
    "extra",
    [
        'adapter = "http_json"\nbatch_size = 5\n',
        'adapter = "iso20022"\nbatch_size = 0\n',
        'adapter = "iso20022"\nbatch_window_ms = -1\n',
    ],
)
def test_a_batch_an_adapter_cannot_send_refuses_to_load(tmp_path: Path, extra: str) -> None:
    path = tmp_path / "registry.toml"
    path.write_text('[[institution]]\ncode = "A1"\nname = "x"\nkind = "bank"\n' + extra)
    with pytest.raises(ConfigurationError):
        load_registry(path)
