"""Bank statements: header roles, strategies, balance correction and debit filtering on hand-made rows."""

import datetime as dt

import pytest

from docvlm import bank
from docvlm.bank_headers import header_role, map_headers, marker_roles
from docvlm.bank_rows import Transaction, chronological, correct_balances, read_statement, resolve_dates
from docvlm.prompts import load_prompts
from docvlm.schema import load_schema

SCHEMA = load_schema()
PROMPTS = load_prompts()
HEADERS = "Date\nDescription\nDebit\nCredit\nBalance"


@pytest.mark.parametrize("header, role", [
    ("Date", "date"), ("Value Date", "date"), ("Transaction Details", "description"), ("Particulars", "description"),
    ("Withdrawals ($)", "debit"), ("Debit Amount", "debit"), ("Money Out", "debit"), ("Dr", "debit"),
    ("Deposits", "credit"), ("Credit Amount", "credit"), ("Running Balance", "balance"),
    ("Transaction Amount", "amount"), ("Debits/Credits", "amount"), ("Dr/Cr", "amount"),
])
def test_header_roles_from_the_schema_table(header, role):
    assert header_role(header, SCHEMA)[0] == role


def test_unknown_header_and_marker_roles():
    assert header_role("Cheque No.", SCHEMA) is None
    assert marker_roles(["Item", "Qty", "Amount"], SCHEMA) == []
    assert marker_roles(["Date", "Details", "Balance", "Debit"], SCHEMA) == ["debit", "balance"]
    assert map_headers(["Value Date", "Txn Date", "Details"], SCHEMA) == {"date": "Txn Date", "description": "Details"}


@pytest.mark.parametrize("headers, strategy", [
    ("Date\nDetails\nDebit\nCredit\nBalance", "balance_debit_credit"),
    ("Date\nDetails\nWithdrawals\nBalance", "balance_debit_credit"),
    ("Date\nDetails\nAmount\nBalance", "amount_balance"),
    ("Date\nDetails\nAmount", "signed_amount"),
    ("Date\nDetails\nDebit\nCredit", "debit_credit"),
    ("Date\nDetails", "direct"),
    ("", "direct"),
])
def test_strategy_follows_the_roles(headers, strategy):
    assert bank.plan_rows_turn(headers, PROMPTS, SCHEMA).strategy == strategy


def test_rows_prompt_names_the_statements_own_headers():
    plan = bank.plan_rows_turn("Txn Date\nNarrative\nPaid Out\nPaid In\nRunning Balance", PROMPTS, SCHEMA)
    assert "Txn Date | Narrative | Paid Out | Paid In | Running Balance" in plan.prompt
    assert plan.columns == ["date", "description", "debit", "credit", "balance"]
    assert "{" not in plan.prompt  # every placeholder filled


def _finish(rows: str, headers: str = HEADERS, finished: bool = True):
    return bank.finish_statement(bank.plan_rows_turn(headers, PROMPTS, SCHEMA), rows, SCHEMA, finished=finished)


def test_credit_mislabelled_as_debit_is_corrected_and_dropped():
    fields, details = _finish(
        "01/03/2024 | Opening Balance | | | 100.00\n"
        "02/03/2024 | Refund Target | 30.00 | | 130.00\n"    # printed as a debit; the balance rose
        "03/03/2024 | Groceries | 20.00 | | 110.00\n")
    assert fields["LINE_ITEM_DESCRIPTIONS"] == "Groceries"
    assert fields["TRANSACTION_AMOUNTS_PAID"] == "$20.00"
    assert details["corrections"][0]["now"] == {"debit": None, "credit": 30.0}


def test_balance_decides_the_amount_too():
    fields, details = _finish(
        "01/03/2024 | Opening Balance | | | 100.00\n"
        "02/03/2024 | Fuel | 4.50 | | 55.00\n")   # amount misread: the balance fell by 45.00
    assert fields["TRANSACTION_AMOUNTS_PAID"] == "$45.00"
    assert len(details["corrections"]) == 1


def test_within_tolerance_is_not_a_correction():
    fields, details = _finish("01/03/2024 | Opening Balance | | | 100.00\n02/03/2024 | Fee | 2.50 | | 97.51\n")
    assert details["corrections"] == [] and fields["TRANSACTION_AMOUNTS_PAID"] == "$2.50"


def test_reverse_chronological_statement_is_reversed_then_corrected():
    fields, details = _finish(
        "05/03/2024 | Rent | 900.00 | | 150.00\n"
        "04/03/2024 | Pay | 1,000.00 | | 1,050.00\n"    # a credit mislabelled as a debit
        "02/03/2024 | Coffee | 4.00 | | 50.00\n"
        "01/03/2024 | Opening balance | | | 54.00\n")
    assert details["order"] == "reversed"
    assert fields["LINE_ITEM_DESCRIPTIONS"] == "Coffee | Rent"
    assert fields["TRANSACTION_DATES"] == "02/03/2024 | 05/03/2024"
    assert fields["TRANSACTION_AMOUNTS_PAID"] == "$4.00 | $900.00"
    assert fields["STATEMENT_DATE_RANGE"] == "01/03/2024 - 05/03/2024"


def test_yearless_dates_take_the_printed_period_years():
    fields, _ = _finish(
        "STATEMENT_PERIOD: 20/12/2023 - 19/01/2024\n"
        "28 Dec | Opening balance | | | 500.00\n"
        "30 Dec | Taxi | 40.00 | | 460.00\n"
        "03 Jan | Pharmacy | 12.00 | | 448.00\n")
    assert fields["TRANSACTION_DATES"] == "30/12/2023 | 03/01/2024"
    assert fields["STATEMENT_DATE_RANGE"] == "20/12/2023 - 19/01/2024"


def test_yearless_dates_without_period_take_the_rows_year():
    items = [Transaction("05/03/2024", "a"), Transaction("07 Mar", "b")]
    resolve_dates(items, None, SCHEMA)
    assert items[1].date == dt.date(2024, 3, 7)


def test_mixed_order_is_sorted_stably():
    items = [Transaction("", "x", date=dt.date(2024, 3, d)) for d in (3, 1, 2)]
    ordered, how = chronological(items)
    assert how == "sorted" and [t.date.day for t in ordered] == [1, 2, 3]


def test_closing_and_total_rows_are_not_transactions():
    fields, details = _finish(
        "01/03/2024 | Opening Balance | | | 100.00\n"
        "02/03/2024 | Bakery | 10.00 | | 90.00\n"
        "31/03/2024 | Total debits | 10.00 | | \n"
        "31/03/2024 | Closing Balance | | | 90.00\n")
    assert fields["LINE_ITEM_DESCRIPTIONS"] == "Bakery" and details["skipped_rows"] == 3


def test_correct_balances_without_an_opening_row_starts_at_the_first_balance():
    rows = [Transaction("", "a", debit=5.0, balance=95.0), Transaction("", "b", debit=5.0, balance=105.0)]
    corrections = correct_balances(rows, 0.01)
    assert rows[1].credit == 10.0 and rows[1].debit is None and len(corrections) == 1


def test_row_without_balance_carries_the_running_balance():
    rows = [Transaction("", "open", balance=100.0, kind="opening"), Transaction("", "a", debit=10.0),
            Transaction("", "b", debit=5.0, balance=95.0)]   # 100 - 10 = 90, so b rose by 5
    correct_balances(rows, 0.01)
    assert rows[2].credit == 5.0 and rows[2].debit is None


def test_signed_amount_without_balance_uses_the_sign():
    fields, details = _finish("01/03/2024 | Shop | -12.00\n02/03/2024 | Pay | 500.00\n03/03/2024 | Fee | 3.00 DR\n",
                              headers="Date\nDescription\nAmount")
    assert fields["TRANSACTION_AMOUNTS_PAID"] == "$12.00 | $3.00"
    assert details["strategy"] == "signed_amount"


def test_lists_have_equal_length_even_with_missing_descriptions():
    fields, _ = _finish("01/03/2024 | NOT_FOUND | 7.00 | | \n02/03/2024 | Fee | 1.00 | | \n")
    assert fields["LINE_ITEM_DESCRIPTIONS"] == "NOT_FOUND | Fee"
    assert fields["TRANSACTION_DATES"] == "01/03/2024 | 02/03/2024"


def test_details_record_the_work():
    _, details = _finish("01/03/2024 | Opening Balance | | | 100.00\n02/03/2024 | Bakery | 10.00 | | 90.00\n")
    assert {"strategy", "headers", "mapping", "corrections", "rows", "loop_cut", "order"} <= set(details)
    assert details["rows"][1] == {"date_text": "02/03/2024", "description": "Bakery", "debit": 10.0, "credit": None,
                                  "balance": 90.0, "kind": "transaction", "date": "02/03/2024"}


def test_read_statement_is_usable_alone():
    statement = read_statement("02/03/2024 | Bakery | 10.00 | 5.00 | 90.00", ["date", "description", "debit",
                               "credit", "balance"], [], "debit_credit", SCHEMA)
    assert [t.description for t in statement.debits()] == ["Bakery"]


def test_opening_amount_printed_in_a_money_column_is_the_starting_balance():
    fields, details = _finish("01/03/2024 | Opening Balance | | 200.00 | \n02/03/2024 | Refund | 20.00 | | 220.00\n")
    assert fields["TRANSACTION_AMOUNTS_PAID"] == "NOT_FOUND" and len(details["corrections"]) == 1
