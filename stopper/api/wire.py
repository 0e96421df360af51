"""Read models and use-case results as the API's wire models (version 1).

The wire models (`stopper.contracts`) know no use case; the API is the edge that has both, so
the mapping from one to the other lives here. Amounts leave in major units, account numbers
masked.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from stopper.app.returns import ReturnOrderResult
from stopper.app.views import (
    AccountRecordView,
    CaseLinksView,
    CaseSummaryView,
    CaseView,
    FlaggedAccountsView,
    HoldListView,
    HoldView,
    InstitutionHealthView,
    TrailView,
)
from stopper.contracts.accounts import (
    AccountCaseV1,
    AccountRecordV1,
    FlaggedAccountsV1,
    LinkedCasesV1,
    LinkedCaseV1,
    RingV1,
    SharedAccountV1,
)
from stopper.contracts.cases import (
    CaseV1,
    HoldV1,
    PayoutOrderedV1,
    PayoutV1,
    ReturnsOrderedV1,
    ReturnStartedV1,
    SkippedHoldV1,
    TrailEdgeV1,
    TrailLayerV1,
    TrailV1,
    to_major,
)
from stopper.contracts.operations import (
    BREAKER_STATES,
    CaseSummaryV1,
    HoldListItemV1,
    InstitutionStatusListV1,
    InstitutionStatusV1,
)
from stopper.domain.accounts import mask_account_number
from stopper.domain.mules import is_flagged
from stopper.registry import Registry


def hold_v1(h: HoldView) -> HoldV1:
    return HoldV1(
        hold_id=h.hold_id,
        institution_code=h.institution_code,
        account=h.account_masked,
        state=h.state,
        layer=h.layer,
        parent_hold_id=h.parent_hold_id,
        currency=h.currency,
        amount_asked=to_major(h.amount_asked),
        amount_stopped=to_major(h.amount_stopped),
        amount_frozen=to_major(h.amount_frozen),
        amount_returned=to_major(h.amount_returned),
        updated_at=h.updated_at,
    )


def case_v1(view: CaseView, links: CaseLinksView) -> CaseV1:
    by_state: dict[str, int] = {}
    for hold in view.holds:
        by_state[hold.state] = by_state.get(hold.state, 0) + 1
    return CaseV1(
        case_id=view.case_id,
        report_id=view.report_id,
        agency_code=view.agency_code,
        reported_at=view.reported_at,
        accepted_at=view.accepted_at,
        opened_at=view.opened_at,
        victims=view.victim_count,
        transfers=view.transfer_count,
        holds_by_state=by_state,
        holds=[hold_v1(h) for h in view.holds],
        payouts=[
            PayoutV1(
                hold_id=p.hold_id,
                round=p.round,
                victim_ref=p.victim_ref,
                currency=p.currency,
                amount=to_major(p.amount),
                account=p.account_masked,
                status=p.status,
            )
            for p in view.payouts
        ],
        linked_cases=linked_cases_v1(links),
    )


def linked_cases_v1(links: CaseLinksView) -> LinkedCasesV1:
    return LinkedCasesV1(
        cases=[
            LinkedCaseV1(
                case_id=c.case_id,
                agency_code=c.agency_code,
                opened_at=c.opened_at,
                shared_accounts=[
                    SharedAccountV1(institution_code=a.institution_code, account=a.account_masked)
                    for a in c.shared
                ],
            )
            for c in links.linked
        ],
        total=links.linked_total,
        ring=RingV1(size=links.ring_size, case_ids=list(links.ring_case_ids)),
        complete=links.complete,
    )


def account_record_v1(view: AccountRecordView) -> AccountRecordV1:
    return AccountRecordV1(
        institution_code=view.institution_code,
        account=view.account_masked,
        flagged=is_flagged(view.cases),
        cases=view.cases,
        first_seen_at=view.first_seen_at,
        last_seen_at=view.last_seen_at,
        amount_stopped={c: to_major(a) for c, a in sorted(view.amount_stopped.items())},
        recent_cases=[
            AccountCaseV1(
                case_id=c.case_id,
                agency_code=c.agency_code,
                layer=c.layer,
                state=c.state,
                named_at=c.named_at,
            )
            for c in view.recent_cases
        ],
    )


def flagged_accounts_v1(view: FlaggedAccountsView, offset: int) -> FlaggedAccountsV1:
    after = offset + len(view.accounts)
    return FlaggedAccountsV1(
        accounts=[account_record_v1(a) for a in view.accounts],
        total=view.total,
        next_offset=after if view.accounts and after < view.total else None,
    )


def trail_v1(view: TrailView) -> TrailV1:
    layers: dict[int, list[HoldView]] = {}
    for hold in view.holds:
        layers.setdefault(hold.layer, []).append(hold)
    return TrailV1(
        case_id=view.case_id,
        layers=[
            TrailLayerV1(
                layer=layer,
                holds=len(holds),
                amount_asked=to_major(sum(h.amount_asked for h in holds)),
                amount_stopped=to_major(sum(h.amount_stopped for h in holds)),
            )
            for layer, holds in sorted(layers.items())
        ],
        holds=[hold_v1(h) for h in view.holds],
        edges=[
            TrailEdgeV1(
                from_hold_id=e.from_hold_id,
                to_hold_id=e.to_hold_id,
                kind=e.kind,
                institution_code=e.institution_code,
                account=e.account_masked,
                amount=to_major(e.amount),
                amount_traced=to_major(e.amount_traced),
                transferred_at=e.transferred_at,
                outcome=e.outcome,
            )
            for e in view.edges
        ],
        unrecoverable=to_major(
            sum(e.amount_traced for e in view.edges if e.outcome == "unrecoverable")
        ),
    )


def returns_ordered_v1(case_id: UUID, result: ReturnOrderResult) -> ReturnsOrderedV1:
    return ReturnsOrderedV1(
        case_id=case_id,
        returns=[
            ReturnStartedV1(
                hold_id=r.hold_id,
                currency=r.currency,
                amount=to_major(r.amount),
                unallocated=to_major(r.unallocated),
                resent=r.resent,
                payouts=[
                    PayoutOrderedV1(
                        victim_ref=p.victim_ref,
                        amount=to_major(p.amount),
                        account=mask_account_number(p.account_number),
                    )
                    for p in r.payouts
                ],
            )
            for r in result.started
        ],
        skipped=[SkippedHoldV1(hold_id=h, reason=why) for h, why in result.skipped.items()],
    )


def case_summary_v1(v: CaseSummaryView) -> CaseSummaryV1:
    return CaseSummaryV1(
        case_id=v.case_id,
        report_id=v.report_id,
        agency_code=v.agency_code,
        opened_at=v.opened_at,
        holds_by_state=v.holds_by_state,
        amount_reported={c: to_major(a) for c, a in sorted(v.amount_asked.items())},
        amount_stopped={c: to_major(a) for c, a in sorted(v.amount_stopped.items())},
        next_lapse_at=v.next_lapse_at,
        needs_person=v.holds_by_state.get("failed", 0),
    )


def hold_list_item_v1(v: HoldListView) -> HoldListItemV1:
    return HoldListItemV1(
        **hold_v1(v.hold).model_dump(),
        case_id=v.case_id,
        state_reason=v.state_reason,
        expires_at=v.expires_at,
    )


def institution_status_list_v1(
    registry: Registry, views: Sequence[InstitutionHealthView]
) -> InstitutionStatusListV1:
    by_code = {v.institution_code: v for v in views}
    rows = []
    for code, institution in registry.items():
        v = by_code.get(code)
        attempts = v.attempts if v else 0
        failures = v.failures if v else 0
        rows.append(
            InstitutionStatusV1(
                code=code,
                name=institution.name,
                kind=institution.kind.value,
                breaker=BREAKER_STATES[v.breaker_state] if v else "closed",
                attempts=attempts,
                failures=failures,
                error_rate=round(failures / attempts, 3) if attempts else None,
                latency_p95_ms=v.latency_p95_ms if v else None,
                instances=v.instances if v else 0,
                updated_at=v.updated_at if v else None,
            )
        )
    # The troubled first: open breakers, then the highest error rates.
    rows.sort(key=lambda r: (-BREAKER_STATES.index(r.breaker), -(r.error_rate or 0), r.code))
    return InstitutionStatusListV1(institutions=rows)
