"""Bank statements in two turns: column headers, then every row in a format built from them.

turn 0  header_prompt -> the table's headers, one a line
        plan_rows_turn: headers -> roles (schema.bank_header_roles, the table detection uses too)
        -> strategy -> the turn-1 prompt naming the statement's own headers
turn 1  finish_statement: rows (docvlm/bank_rows.py) -> chronological order -> balance correction
        -> debit rows only -> equal-length lists + STATEMENT_DATE_RANGE

Strategies, by the roles the headers show:
  balance_debit_credit  debit and/or credit columns and a balance: the balance decides
  amount_balance        one (signed or merged Debits/Credits) amount column and a balance
  signed_amount         one amount column, no balance: the sign decides (- or DR = money out)
  debit_credit          debit and/or credit columns, no balance: the columns decide
  direct                no money column recognised: a direct five-field prompt instead
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from docvlm import bank_rows
from docvlm.bank_headers import map_headers, parse_headers
from docvlm.normalize import format_date, format_money, normalize_fields, normalize_value, split_list
from docvlm.parse import cut_repetition, parse_field_answer
from docvlm.prompts import Prompts
from docvlm.schema import Schema

BANK_TYPE = "BANK_STATEMENT"


@dataclass
class BankPlan:
    headers: list[str]
    mapping: dict[str, str]  # role -> the statement's header for it
    strategy: str
    prompt: str  # the turn-1 prompt
    columns: list[str] = field(default_factory=list)  # roles of the turn-1 row format, left to right


# ----------------------------------------------------------------------------- turns
def header_prompt(prompts: Prompts) -> str:
    return prompts.bank_headers


def plan_rows_turn(headers_text: str, prompts: Prompts, schema: Schema) -> BankPlan:
    """Turn 1 from the turn-0 answer: the strategy and a row format naming the statement's headers."""
    headers = parse_headers(headers_text)
    mapping = map_headers(headers, schema)
    strategy = choose_strategy(mapping)
    if strategy == "direct":
        return BankPlan(headers, mapping, strategy, prompts.bank_direct, [])
    columns = _row_columns(mapping, strategy)
    return BankPlan(headers, mapping, strategy, _rows_prompt(prompts, columns, mapping), columns)


def longest_rows_prompt(prompts: Prompts) -> str:
    """The longest turn-1 prompt the default header names give (every column role, or the direct prompt):
    what a rows turn is planned for before the statement's own headers are known."""
    return max(_rows_prompt(prompts, list(prompts.bank_column_notes), {}), prompts.bank_direct, key=len)


def _rows_prompt(prompts: Prompts, roles: list[str], mapping: dict[str, str]) -> str:
    """The turn-1 row format over `roles`, each named by the statement's header (`mapping`) or the default."""
    names = [mapping.get(role) or prompts.bank_default_headers.get(role, role.title()) for role in roles]
    notes = [prompts.bank_column_notes[role].format(header=name) for role, name in zip(roles, names)]
    return prompts.bank_rows.format(columns=" | ".join(names), notes="\n".join(notes))


def choose_strategy(mapping: dict[str, str]) -> str:
    has = set(mapping)
    if "balance" in has and has & {"debit", "credit"}:
        return "balance_debit_credit"
    if "amount" in has:
        return "amount_balance" if "balance" in has else "signed_amount"
    if has & {"debit", "credit"}:
        return "debit_credit"
    return "direct"


def _row_columns(mapping: dict[str, str], strategy: str) -> list[str]:
    """date, description, then the strategy's money columns in the statement's order."""
    wanted = {"balance_debit_credit": ("debit", "credit", "balance"), "amount_balance": ("amount", "balance"),
              "signed_amount": ("amount",), "debit_credit": ("debit", "credit")}[strategy]
    return ["date", "description"] + [role for role in mapping if role in wanted]


def finish_statement(plan: BankPlan, rows_text: str, schema: Schema,
                     finished: bool = True) -> tuple[dict[str, str], dict[str, Any]]:
    """Turn-1 answer -> (normalised BANK_STATEMENT fields, details of how they were obtained).

    `finished=False` (the budget ran out) drops the last, possibly half-written, row.
    """
    details: dict[str, Any] = {"strategy": plan.strategy, "headers": plan.headers, "mapping": plan.mapping,
                               "columns": plan.columns}
    text, details["loop_cut"] = cut_repetition(rows_text)
    if plan.strategy == "direct":
        return _finish_direct(text, schema, details), details
    # A cut loop ends on a complete row; otherwise an unfinished answer ends mid-row.
    complete = finished or details["loop_cut"] is not None
    statement = bank_rows.read_statement(text, plan.columns, plan.headers, plan.strategy, schema, complete)
    details.update(statement.details())
    return statement_fields(statement, schema), details


def statement_fields(statement: bank_rows.Statement, schema: Schema) -> dict[str, str]:
    """The normalised BANK_STATEMENT fields of a statement: its debit rows and its period (shared by
    the VLM's turn-1 answer and the OCR engine's table reader)."""
    debits = statement.debits()
    fields = {
        "DOCUMENT_TYPE": BANK_TYPE,
        "STATEMENT_DATE_RANGE": statement.date_range() or schema.not_found,
        "LINE_ITEM_DESCRIPTIONS": _join([t.description for t in debits], schema),
        "TRANSACTION_DATES": _join([format_date(t.date) if t.date else t.date_text for t in debits], schema),
        "TRANSACTION_AMOUNTS_PAID": _join([format_money(t.debit or 0.0) for t in debits], schema),
    }
    return _equal_lists(normalize_fields(fields, schema.type_spec(BANK_TYPE), schema), schema)


def _finish_direct(text: str, schema: Schema, details: dict[str, Any]) -> dict[str, str]:
    """The direct prompt's FIELD: value answer; yearless dates take the statement period's year."""
    spec = schema.type_spec(BANK_TYPE)
    raw = parse_field_answer(text, spec, schema)
    fields = normalize_fields({**raw, "DOCUMENT_TYPE": BANK_TYPE}, spec, schema)
    period = fields["STATEMENT_DATE_RANGE"]
    year = int(period[-4:]) if period != schema.not_found and period[-4:].isdigit() else None
    if year and "TRANSACTION_DATES" in raw:
        fields["TRANSACTION_DATES"] = normalize_value(raw["TRANSACTION_DATES"], "date", schema, True, year=year)
    amounts = fields["TRANSACTION_AMOUNTS_PAID"]
    fields["TRANSACTION_AMOUNTS_PAID"] = amounts.replace("-$", "$")  # money out, written as a debit amount
    details["rows"] = []
    return _equal_lists(normalize_fields(fields, spec, schema), schema)


def _equal_lists(fields: dict[str, str], schema: Schema) -> dict[str, str]:
    """A statement's lists describe the same rows: a list missing entirely gets placeholders too."""
    names = [f.name for f in schema.type_spec(BANK_TYPE).fields if f.is_list]
    length = max(len(split_list(fields[n], schema)) for n in names)
    for name in names:
        if length and fields[name] == schema.not_found:
            fields[name] = schema.list_separator.join([schema.not_found] * length)
    return fields


def _join(items: list[str], schema: Schema) -> str:
    cleaned = [item.replace("|", "/").strip() or schema.not_found for item in items]
    return schema.list_separator.join(cleaned) if cleaned else schema.not_found
