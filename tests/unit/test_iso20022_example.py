"""`stopper iso20022 example ...` prints messages the official schemas accept, and each says what
Stopper sends or expects for the sample case."""

from __future__ import annotations

import pytest

from stopper.adapters.institutions.iso20022 import (
    parse_document,
    read_recall,
    read_resolution,
    read_return_answer,
    read_return_instruction,
)
from stopper.adapters.institutions.iso20022.examples import sample_recall, sample_return
from stopper.cli import main
from stopper.domain.messages import AnswerKind, OrderAnswer

MESSAGES = ["camt.056", "camt.029", "pacs.004", "return"]


def printed(message: str, capsysbinary: pytest.CaptureFixture[bytes]) -> bytes:
    assert main(["iso20022", "example", message]) == 0
    out: bytes = capsysbinary.readouterr().out
    return out


@pytest.mark.parametrize("message", MESSAGES)
def test_each_example_is_a_valid_message(
    message: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    out = printed(message, capsysbinary)

    assert out.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<Document")
    parse_document(out)  # refused unless its official schema accepts it
    assert out == printed(message, capsysbinary)  # the same every time


def test_the_recall_example_is_the_sample_cases_stop_requests(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    read = read_recall(parse_document(printed("camt.056", capsysbinary)))

    assert read == sample_recall()
    assert [len(i.payments) for i in read.items] == [2, 1]


def test_the_answer_example_stops_part_of_one_account_and_finds_the_other_closed(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    read = read_resolution(parse_document(printed("camt.029", capsysbinary)))

    first, second = (i.status.answer for i in read.items if i.status)
    assert first is not None and second is not None
    assert (first.kind, first.amount_held, len(first.onward)) == (AnswerKind.STOPPED, 3_000_000, 2)
    assert second.kind is AnswerKind.NOT_FOUND
    assert read.answers_message_id == sample_recall().message_id


def test_the_return_examples_order_and_confirm_the_same_payouts(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    instruction = read_return_instruction(parse_document(printed("return", capsysbinary)))
    confirmed = parse_document(printed("pacs.004", capsysbinary))

    assert instruction == sample_return(sample_recall())
    assert read_return_answer(confirmed, instruction.order) == OrderAnswer(True, 3_000_000)
