"""How each simulated institution behaves: latency, faults, callbacks, outages, by named profile."""

from __future__ import annotations

from dataclasses import dataclass, replace

from stopper.registry import InstitutionKind, Registry


@dataclass(frozen=True, slots=True)
class Behaviour:
    answers_by_callback: bool = False
    latency_median_ms: float = 80.0
    latency_sigma: float = 0.6
    callback_delay_ms: float = 300.0
    timeout_rate: float = 0.0
    error_rate: float = 0.0
    malformed_rate: float = 0.0
    double_callback_rate: float = 0.0
    missing_account_rate: float = 0.06
    reject_rate: float = 0.02
    move_on_rate: float = 0.6  # first-level accounts whose money (partly) moved on
    cash_out_rate: float = 0.15  # of those, the ones that took it out as cash
    hang_s: float = 10.0
    outage: tuple[float, float] | None = None  # seconds after start: down from, until


def profile(name: str, registry: Registry) -> dict[str, Behaviour]:
    """Behaviours for every institution of `registry` under a named profile.

    realistic: most answer within a few hundred ms, a few percent of faults, payment
    institutions and every third bank answer by callback, one payment institution is down
    from 2 s to 12 s after start.
    chaos: 30 % timeouts, 10 % 5xx, some garbage and double callbacks, and the first bank down
    from 3 s to 20 s after start.
    instant: answers at once, no faults (benchmarks).
    """
    behaviours: dict[str, Behaviour] = {}
    banks = [i.code for i in registry.of_kind(InstitutionKind.BANK)]
    payment = [i.code for i in registry.of_kind(InstitutionKind.PAYMENT_INSTITUTION)]
    for index, institution in enumerate(registry.values()):
        callback = institution.kind is InstitutionKind.PAYMENT_INSTITUTION or index % 3 == 2
        if name == "instant":
            behaviours[institution.code] = Behaviour(
                latency_median_ms=0.0,
                latency_sigma=0.0,
                callback_delay_ms=0.0,
                missing_account_rate=0.0,
                reject_rate=0.0,
                move_on_rate=0.0,
            )
            continue
        base = Behaviour(
            answers_by_callback=callback,
            latency_median_ms=60.0 if institution.kind is InstitutionKind.BANK else 120.0,
            timeout_rate=0.01,
            error_rate=0.02,
            malformed_rate=0.005,
            double_callback_rate=0.03,
        )
        if name == "chaos":
            base = replace(
                base,
                timeout_rate=0.30,
                error_rate=0.10,
                malformed_rate=0.02,
                double_callback_rate=0.10,
                hang_s=5.0,
            )
        behaviours[institution.code] = base
    if name == "realistic" and payment:
        behaviours[payment[-10]] = replace(behaviours[payment[-10]], outage=(2.0, 12.0))
    if name == "chaos" and banks:
        behaviours[banks[0]] = replace(behaviours[banks[0]], outage=(3.0, 20.0))
    return behaviours
