"""The institution registry: which banks and payment institutions Stopper knows.

The packaged file `stopper/data/institutions.toml` describes the simulated world; operators point
Stopper at another file through settings (`STOPPER_REGISTRY_PATH`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path

from stopper.errors import ConfigurationError


class InstitutionKind(StrEnum):
    BANK = "bank"
    PAYMENT_INSTITUTION = "payment_institution"


@dataclass(frozen=True, slots=True)
class Institution:
    code: str
    name: str
    kind: InstitutionKind


@dataclass(frozen=True, slots=True)
class Registry(Mapping[str, Institution]):
    institutions: Mapping[str, Institution]

    def __getitem__(self, code: str) -> Institution:
        return self.institutions[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self.institutions)

    def __len__(self) -> int:
        return len(self.institutions)

    def of_kind(self, kind: InstitutionKind) -> list[Institution]:
        return [i for i in self.institutions.values() if i.kind is kind]


def load_registry(path: Path | None = None) -> Registry:
    """Read and check a registry file; `None` means the packaged simulated world."""
    try:
        if path is None:
            raw = resources.files("stopper.data").joinpath("institutions.toml").read_text()
        else:
            raw = path.read_text()
        document = tomllib.loads(raw)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigurationError(f"cannot read the institution registry: {e}") from e
    institutions: dict[str, Institution] = {}
    for entry in document.get("institution", []):
        try:
            institution = Institution(
                code=str(entry["code"]),
                name=str(entry["name"]),
                kind=InstitutionKind(entry["kind"]),
            )
        except (KeyError, ValueError) as e:
            raise ConfigurationError(f"bad registry entry {entry!r}: {e}") from e
        if institution.code in institutions:
            raise ConfigurationError(f"institution code {institution.code} listed twice")
        institutions[institution.code] = institution
    if not institutions:
        raise ConfigurationError("the institution registry lists no institutions")
    return Registry(institutions)
