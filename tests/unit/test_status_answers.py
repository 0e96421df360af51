"""The ladder every status answer climbs (`act_on_status`), for a first request and a
supplement alike: what it records, what it sends again, what it refuses and counts."""

from __future__ import annotations

from uuid import uuid4

from stopper.app.status_answers import act_on_status
from stopper.app.stop_decisions import AnswerOutcome
from stopper.domain.messages import AnswerKind, InstitutionAnswer, StatusKind, StopStatus
from stopper.metrics import STATUS_REFUSED

HOLD = uuid4()
KEY = f"stopper-{HOLD}-0"
STOPPED = InstitutionAnswer(AnswerKind.STOPPED, amount_held=100)


class Calls:
    """What the ladder asked of its caller, and what the caller answers."""

    def __init__(self, outcome: AnswerOutcome = AnswerOutcome.APPLIED, owed: bool = True) -> None:
        self.outcome, self.owed = outcome, owed
        self.recorded: list[InstitutionAnswer] = []
        self.resent = 0
        self.waited = 0

    async def record_answer(self, answer: InstitutionAnswer) -> AnswerOutcome:
        self.recorded.append(answer)
        return self.outcome

    async def resend(self) -> bool:
        self.resent += 1
        return self.owed

    async def on_pending(self) -> None:
        self.waited += 1


async def act(status: StopStatus, calls: Calls) -> str:
    return await act_on_status(
        status,
        HOLD,
        KEY,
        "BK01",
        record_answer=calls.record_answer,
        resend=calls.resend,
        on_pending=calls.on_pending,
    )


def refused(reason: str) -> float:
    return float(STATUS_REFUSED.labels("BK01", reason)._value.get())


async def test_an_outcome_is_recorded_and_a_repeated_one_matches() -> None:
    calls = Calls()
    assert await act(StopStatus(KEY, StatusKind.ANSWERED, HOLD, STOPPED), calls) == "applied"
    assert calls.recorded == [STOPPED]
    calls = Calls(AnswerOutcome.REPEATED)
    assert await act(StopStatus(KEY, StatusKind.ANSWERED, None, STOPPED), calls) == "matched"


async def test_pending_waits_and_unknown_sends_again_only_what_is_owed() -> None:
    calls = Calls()
    assert await act(StopStatus(KEY, StatusKind.PENDING), calls) == "pending"
    assert (calls.waited, calls.resent) == (1, 0)
    assert await act(StopStatus(KEY, StatusKind.UNKNOWN), calls) == "resent"
    calls = Calls(owed=False)
    assert await act(StopStatus(KEY, StatusKind.UNKNOWN), calls) == "unknown"
    assert calls.resent == 1 and not calls.recorded


async def test_statuses_that_cannot_be_this_requests_change_nothing_and_are_counted() -> None:
    cases = {
        "other_request": StopStatus(f"stopper-{HOLD}-1", StatusKind.ANSWERED, HOLD, STOPPED),
        "other_hold": StopStatus(KEY, StatusKind.ANSWERED, uuid4(), STOPPED),
        "malformed": StopStatus(KEY, StatusKind.ANSWERED, HOLD, None),
        "lifted": StopStatus(KEY, StatusKind.LIFTED, HOLD),
    }
    for reason, status in cases.items():
        calls = Calls()
        before = refused(reason)
        assert await act(status, calls) == reason
        assert refused(reason) == before + 1
        assert (calls.recorded, calls.resent, calls.waited) == ([], 0, 0)


async def test_an_outcome_contradicting_a_final_state_is_refused() -> None:
    calls = Calls(AnswerOutcome.CONFLICT)
    before = refused("contradicts_final")
    status = StopStatus(KEY, StatusKind.ANSWERED, HOLD, STOPPED)
    assert await act(status, calls) == "contradicts_final"
    assert refused("contradicts_final") == before + 1
