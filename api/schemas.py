"""JSON Schemas (2020-12) of every request and response body: the one source that validates
requests and generates the OpenAPI document, so the two cannot drift apart."""

from __future__ import annotations

from typing import Any

from ledger.application import TOKEN_BYTES
from ledger.funding import LEVELS
from ledger.institution import KINDS
from ledger.money import MAX_AMOUNT_FEN
from ledger.principals import ROLES
from ledger.validate import FORBIDDEN_TEXT_CLASS, MAX_FISCAL_YEAR, MAX_TEXT_LEN, MIN_FISCAL_YEAR

Schema = dict[str, Any]

FEN: Schema = {"type": "integer", "minimum": 0, "maximum": MAX_AMOUNT_FEN}
POSITIVE_FEN: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT_FEN}
BP: Schema = {"type": "integer", "minimum": 0, "maximum": 10_000}
YEAR: Schema = {"type": "integer", "minimum": MIN_FISCAL_YEAR, "maximum": MAX_FISCAL_YEAR}
DATE: Schema = {"type": "string", "format": "date", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
# What ledger.validate.check_text admits: no control, format, separator or surrogate
# characters, not only white space.
TEXT: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_TEXT_LEN,
    "pattern": f"^[^{FORBIDDEN_TEXT_CLASS}]*$",
    "not": {"pattern": r"^\s*$"},
}
TEXT_ANY: Schema = {"type": "string"}
KEY: Schema = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"}
# GB 32100-2015: the alphabet has no I, O, S, V or Z and characters 3-8 are the administrative
# division code. The check character is verified by the ledger, which answers validation-error.
_USCC_CHAR = "[0-9A-HJ-NPQRTUWXY]"
USCC: Schema = {"type": "string", "pattern": rf"^{_USCC_CHAR}{{2}}[0-9]{{6}}{_USCC_CHAR}{{10}}$"}
UUID_STR: Schema = {"type": "string", "format": "uuid"}
MAX_BANK_ACCOUNT_LEN = 64  # as ledger.application.register_institution checks it


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    """A closed object: unknown fields are refused (API_CONTRACT.md §2)."""
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
        "additionalProperties": False,
    }


def open_obj(required: dict[str, Schema]) -> Schema:
    """An object with these fields and possibly more (nested reports such as traces)."""
    return {"type": "object", "required": list(required), "properties": required}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


COUNT: Schema = {"type": "integer", "minimum": 0}
PAYOUT_STATUSES = ["created", "approved", "settled", "returned", "cancelled"]
PAYABLE_KINDS = ["subsidy", "bonus", "guarantee"]
HEX_HASH: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}


def page(item: Schema) -> Schema:
    """A page of a list: ``next_after`` is the cursor for the next page, null at the end."""
    return obj({"items": {"type": "array", "items": item}, "next_after": nullable(COUNT)})


SOURCE_AMOUNTS: Schema = {"type": "array", "items": obj({"source_id": KEY, "amount_fen": FEN})}


REASON = obj({"reason": TEXT})
PUBLIC_KEY_PEM: Schema = {"type": "string", "minLength": 1, "maxLength": 1000}
PRINCIPAL_FIELDS: dict[str, Schema] = {
    "id": UUID_STR,
    "name": TEXT,
    "role": {"enum": list(ROLES)},
    "institution_id": nullable(USCC),
    "revoked": {"type": "boolean"},
}

REQUESTS: dict[str, Schema] = {
    "NewPrincipal": obj(
        {"name": TEXT, "role": {"enum": list(ROLES)}}, {"institution_id": nullable(USCC)}
    ),
    "NewFundingSource": obj(
        {
            "id": KEY,
            "name": TEXT,
            "level": {"enum": list(LEVELS)},
            "fiscal_year": YEAR,
            "appropriation_fen": FEN,
            "document_ref": TEXT,
        }
    ),
    "NewProgram": obj(
        {
            "id": KEY,
            "name": TEXT,
            "fiscal_year": YEAR,
            "shares": {
                "type": "array",
                "minItems": 1,
                "maxItems": 10,
                "items": obj({"source_id": KEY, "share_bp": {**BP, "minimum": 1}}),
            },
            "max_face_value_fen": POSITIVE_FEN,
            "provider_bonus_rate_bp": BP,
            "provider_bonus_source_id": KEY,
            "provider_annual_cap_fen": FEN,
            "enterprise_annual_cap_fen": FEN,
        }
    ),
    "NewInstitution": obj(
        {"id": USCC, "name": TEXT, "kind": {"enum": list(KINDS)}},
        {
            "public_key_pem": nullable(PUBLIC_KEY_PEM),
            "bank_account": nullable({**TEXT, "maxLength": MAX_BANK_ACCOUNT_LEN}),
            "contact": nullable(TEXT),
        },
    ),
    "NewVoucher": obj(
        {
            "program_id": KEY,
            "holder_id": USCC,
            "face_value_fen": POSITIVE_FEN,
            "valid_until": DATE,
        }
    ),
    "NewRedemption": obj(
        {
            "voucher_id": UUID_STR,
            "contract_no": KEY,
            "invoice_no": KEY,
            "service_category": {**TEXT, "maxLength": 64},
            "contract_amount_fen": POSITIVE_FEN,
            "service_date": DATE,
        },
        {"signature": {"type": "string", "minLength": 1, "maxLength": 200}},
    ),
    "Reason": REASON,
    "Empty": obj({}),
    "NewPayout": obj({"payee_id": USCC, "source_id": KEY}),
    "NewGuaranteePool": obj(
        {
            "id": KEY,
            "name": TEXT,
            "shares": {
                "type": "array",
                "minItems": 1,
                "maxItems": 10,
                "items": obj({"source_id": KEY, "share_bp": {**BP, "minimum": 1}}),
            },
        },
        {
            "rule": {"enum": ["risk-compensation@1", "risk-compensation@2"]},
            "bank_annual_cap_fen": nullable(FEN),
        },
    ),
    "NewGuaranteeLoan": obj(
        {
            "id": KEY,
            "pool_id": KEY,
            "borrower_id": USCC,
            "principal_fen": POSITIVE_FEN,
            "start_date": DATE,
            "term_months": {"type": "integer", "minimum": 1, "maximum": 600},
            "first_loan": {"type": "boolean"},
            "credit_only": {"type": "boolean"},
            "ip_pledge": {"type": "boolean"},
        },
        {"credit_share_bp": nullable(BP)},
    ),
    "NewGuaranteeClaim": obj({"loan_id": KEY, "loss_fen": POSITIVE_FEN, "default_date": DATE}),
    "NewRecovery": obj({"amount_fen": POSITIVE_FEN, "recovered_on": DATE}),
    "ConfirmLine": obj(
        {"payout_ids": {"type": "array", "minItems": 1, "maxItems": 1000, "items": UUID_STR}}
    ),
    "NewExemption": obj(
        {"claim_id": UUID_STR, "decision_ref": TEXT, "decided_on": DATE, "reason": TEXT}
    ),
    "NewPublicKey": obj({"public_key_pem": PUBLIC_KEY_PEM, "reason": TEXT}),
    "PaymentDetails": obj(
        {
            "bank_account": nullable({**TEXT, "maxLength": MAX_BANK_ACCOUNT_LEN}),
            "contact": nullable(TEXT),
            "reason": TEXT,
        }
    ),
    "Clawback": obj({"reason_code": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9-]{0,39}$"}}),
}

LAG = obj({"position": COUNT, "head": COUNT, "behind_events": COUNT, "behind_ms": COUNT})

RESPONSES: dict[str, Schema] = {
    "Health": obj(
        {"status": {"enum": ["ok"]}},
        {"projections": LAG, "audit_chain": LAG},
    ),
    "Principal": obj(
        {
            **PRINCIPAL_FIELDS,
            # Shown once, in the 201 that creates it: a replayed response carries null.
            "token": nullable({"type": "string", "minLength": (TOKEN_BYTES * 4) // 3}),
        }
    ),
    "PrincipalPage": page(obj({**PRINCIPAL_FIELDS, "position": COUNT})),
    "FundingSource": obj(
        {
            "id": KEY,
            "name": TEXT,
            "level": {"enum": list(LEVELS)},
            "fiscal_year": YEAR,
            "appropriation_fen": FEN,
            "document_ref": TEXT,
            "reserved_fen": FEN,
            "released_fen": FEN,
            "provider_bonus_reserved_fen": FEN,
            "provider_bonus_released_fen": FEN,
            "committed_fen": FEN,
            "disbursed_fen": FEN,
            "provider_bonus_fen": FEN,
            "recovered_fen": FEN,
            "available_fen": FEN,
        },
        {"as_of": {"type": "string"}, "live_vouchers": COUNT, "paid_fen": FEN},
    ),
    "Program": obj(
        {
            "id": KEY,
            "name": TEXT,
            "fiscal_year": YEAR,
            "shares": {"type": "array", "items": obj({"source_id": KEY, "share_bp": BP})},
            "max_face_value_fen": FEN,
            "provider_bonus_rate_bp": BP,
            "provider_bonus_source_id": KEY,
            "provider_annual_cap_fen": FEN,
            "enterprise_annual_cap_fen": FEN,
        }
    ),
    "Institution": obj(
        {
            "id": USCC,
            "name": TEXT,
            "kind": {"enum": list(KINDS)},
            "public_key_pem": nullable({"type": "string"}),
            "public_keys": {
                "type": "array",
                "items": obj({"sha256": HEX_HASH, "public_key_pem": {"type": "string"}}),
            },
            "bank_account": nullable({"type": "string"}),
            "contact": nullable({"type": "string"}),
            "frozen": {"type": "boolean"},
            "frozen_reason": nullable({"type": "string"}),
        }
    ),
    "Voucher": obj(
        {
            "id": UUID_STR,
            "program_id": KEY,
            "holder_id": USCC,
            "fiscal_year": YEAR,
            "face_value_fen": FEN,
            "remaining_fen": FEN,
            "valid_until": DATE,
            "status": {"enum": ["active", "used_up", "expired", "revoked"]},
            "reservations": SOURCE_AMOUNTS,
            "remaining_by_source": SOURCE_AMOUNTS,
            "issued_on": nullable(DATE),
            "provider_bonus_reservation": nullable(obj({"source_id": KEY, "amount_fen": FEN})),
            "provider_bonus_remaining_fen": FEN,
        },
        {"as_of": {"type": "string"}},
    ),
    "Redemption": obj(
        {
            "id": UUID_STR,
            "voucher_id": UUID_STR,
            "provider_id": USCC,
            "holder_id": USCC,
            "program_id": KEY,
            "contract_no": KEY,
            "invoice_no": KEY,
            "contract_amount_fen": FEN,
            "subsidy_fen": FEN,
            "enterprise_pays_fen": FEN,
            "splits": SOURCE_AMOUNTS,
            "honoured_contract_fen": FEN,
            "provider_bonus_fen": FEN,
            "provider_bonus_source_id": KEY,
            "voucher_remaining_fen": FEN,
            "clawed_back": {"type": "boolean"},
            "rules": {"type": "array", "items": {"type": "string"}},
            # By rule ref: the parameters the amounts were decided with.
            "rule_params": {"type": "object"},
            "signature": nullable({"type": "string"}),
            # The exact bytes the provider signed (canonical JSON), to check with its key.
            "signed_payload": nullable({"type": "string"}),
            "public_key_sha256": nullable(HEX_HASH),
        }
    ),
    "Balances": obj(
        {
            "institution_id": USCC,
            "fiscal_year": YEAR,
            "subsidy_received_fen": FEN,
            "enterprise_cap_remaining_fen": nullable(FEN),
            "redeemed_contract_fen": FEN,
            "subsidy_earned_fen": FEN,
            "provider_bonus_fen": FEN,
            "provider_bonus_cap_remaining_fen": nullable(FEN),
        },
        {
            "as_of": {"type": "string"},
            # Now only (from the views): per source, what the provider is owed.
            "by_source": {
                "type": "array",
                "items": obj(
                    {
                        "source_id": KEY,
                        "kind": {"enum": PAYABLE_KINDS},
                        "amount_fen": FEN,
                        "clawed_back_fen": FEN,
                        "paid_fen": FEN,
                        "outstanding_fen": FEN,
                    }
                ),
            },
        },
    ),
    "VoucherPage": page(
        obj(
            {
                "id": UUID_STR,
                "program_id": KEY,
                "holder_id": USCC,
                "fiscal_year": YEAR,
                "face_value_fen": FEN,
                "remaining_fen": FEN,
                "valid_until": DATE,
                "status": {"enum": ["active", "used_up", "expired", "revoked"]},
                "issued_at": {"type": "string"},
                "position": COUNT,
            }
        )
    ),
    "PayablePage": page(
        obj(
            {
                "redemption_id": nullable(UUID_STR),
                "kind": {"enum": PAYABLE_KINDS},
                "source_id": KEY,
                "provider_id": USCC,  # the payee: a provider, or a bank for a guarantee line
                "holder_id": USCC,
                "program_id": KEY,
                "voucher_id": nullable(UUID_STR),
                "contract_no": KEY,
                "fiscal_year": YEAR,
                "amount_fen": FEN,
                "clawed_back_fen": FEN,
                "paid_fen": FEN,
                "outstanding_fen": FEN,
                "payout_id": nullable(UUID_STR),
                "claim_id": nullable(UUID_STR),  # a guarantee claim's compensation
                "recorded_at": {"type": "string"},
                "position": COUNT,
            }
        )
    ),
    "Payout": obj(
        {
            "id": UUID_STR,
            "payee_id": USCC,
            "source_id": KEY,
            "amount_fen": FEN,
            "status": {"enum": PAYOUT_STATUSES},
            "created_by": {"type": "string"},
            "approved_by": nullable({"type": "string"}),
            # The reference the bank line carries back, and the account paid: fixed at approval.
            "end_to_end_id": nullable({"type": "string", "maxLength": 35}),
            "bank_account": nullable({"type": "string"}),
            "payee_name": nullable({"type": "string"}),
            "lines": {
                "type": "array",
                "items": obj(
                    {"kind": {"enum": PAYABLE_KINDS}, "amount_fen": FEN},
                    {"redemption_id": UUID_STR, "claim_id": UUID_STR},
                ),
            },
            "bank_lines": {
                "type": "array",
                "items": obj(
                    {
                        "statement_id": {"type": "string"},
                        "line": COUNT,
                        "amount_fen": FEN,
                        "kind": {"enum": ["paid", "returned"]},
                    }
                ),
            },
        }
    ),
    "PayoutPage": page(
        obj(
            {
                "id": UUID_STR,
                "payee_id": USCC,
                "source_id": KEY,
                "amount_fen": FEN,
                "line_count": COUNT,
                "status": {"enum": PAYOUT_STATUSES},
                "created_by": {"type": "string"},
                "approved_by": nullable({"type": "string"}),
                "end_to_end_id": nullable({"type": "string"}),
                "bank_account": nullable({"type": "string"}),
                "payee_name": nullable({"type": "string"}),
                "created_at": {"type": "string"},
                "approved_at": nullable({"type": "string"}),
                "closed_at": nullable({"type": "string"}),
                "position": COUNT,
            }
        )
    ),
    "GuaranteePool": obj(
        {
            "id": KEY,
            "name": TEXT,
            "shares": {"type": "array", "items": obj({"source_id": KEY, "share_bp": BP})},
            "rule": {"type": "string"},
            "bank_annual_cap_fen": nullable(FEN),
        }
    ),
    "GuaranteeLoan": open_obj(
        {
            "id": KEY,
            "bank_id": USCC,
            "pool_id": KEY,
            "borrower_id": USCC,
            "principal_fen": FEN,
            "losses_fen": FEN,
            "compensated_fen": FEN,
        }
    ),
    "GuaranteeClaim": open_obj(
        {
            "id": UUID_STR,
            "loan_id": KEY,
            "bank_id": USCC,
            "loss_fen": FEN,
            "compensation_fen": FEN,
            "not_compensated_fen": FEN,
            "splits": SOURCE_AMOUNTS,
            "rule": {"type": "string"},
            "status": {"enum": ["filed", "approved", "paid", "rejected"]},
            # The rule, every parameter, the rate tier and each cut in order.
            "decision": {"type": "object"},
            "recovered_fen": FEN,
            "returned_to_fund_fen": FEN,
            "exemption": nullable({"type": "object"}),
            "rejection": nullable(obj({"reason": TEXT_ANY, "rejected_by": TEXT_ANY})),
        }
    ),
    "Recovery": obj(
        {
            "claim_id": UUID_STR,
            "amount_fen": FEN,
            "returned_to_fund_fen": FEN,
            "splits": SOURCE_AMOUNTS,
        }
    ),
    "StatementSummary": open_obj(
        {
            "id": UUID_STR,
            "format": {"type": "string"},
            "account": {"type": "string"},
            "currency": {"type": "string"},
            "line_count": COUNT,
            # Signed, in the currency's minor unit; null when the file gives none.
            "opening_balance_fen": nullable({"type": "integer"}),
            "closing_balance_fen": nullable({"type": "integer"}),
            "balances_add_up": nullable({"type": "boolean"}),
            "explained_difference_fen": {"type": "integer"},
            "matched": COUNT,
            "suggested": COUNT,
            "unmatched": COUNT,
        }
    ),
    "StatementReport": open_obj(
        {
            "id": UUID_STR,
            "line_count": COUNT,
            "lines": {"type": "array", "items": {"type": "object"}},
            "next_after": nullable(COUNT),
        }
    ),
    "ConfirmedLine": obj(
        {
            "statement_id": UUID_STR,
            "line": COUNT,
            "status": {"enum": ["matched"]},
            "payout_ids": {"type": "array", "items": UUID_STR},
        }
    ),
    "Unmatched": obj(
        {
            "lines": {"type": "array", "items": {"type": "object"}},
            "payouts": {"type": "array", "items": {"type": "object"}},
        }
    ),
    "Verdict": obj(
        {
            "ok": {"type": "boolean"},
            "events_checked": COUNT,
            "head_hash": HEX_HASH,
            "first_bad_position": nullable(COUNT),
            "detail": {"type": "string"},
        }
    ),
    "PublicKey": obj(
        {
            "algorithm": {"enum": ["Ed25519"]},
            "public_key_pem": {"type": "string"},
            "key_id": HEX_HASH,
        }
    ),
    "Proof": open_obj(
        {
            "position": COUNT,
            "event": {"type": "object"},
            "leaf_index": COUNT,
            "path": {"type": "array", "items": HEX_HASH},
            "checkpoint": {"type": "object"},
        }
    ),
    "RedemptionTrace": open_obj(
        {
            "redemption_id": UUID_STR,
            "subsidy_fen": FEN,
            "sources_total_fen": FEN,
            "clawed_back": {"type": "boolean"},
            "steps": {"type": "array", "items": {"type": "object"}},
        }
    ),
    "BankLineTrace": open_obj(
        {
            "statement_id": UUID_STR,
            "line": COUNT,
            "amount_fen": FEN,
            "payouts": {"type": "array", "items": {"type": "object"}},
        }
    ),
    "SourceTrace": open_obj(
        {
            "source_id": KEY,
            "disbursed_fen": FEN,
            "recovered_fen": FEN,
            "redemptions": COUNT,
            "destinations": {"type": "array", "items": {"type": "object"}},
        }
    ),
    "Flows": obj(
        {
            "fiscal_year": YEAR,
            "flows": {
                "type": "array",
                "items": obj(
                    {
                        "source_id": KEY,
                        "programme_id": KEY,
                        "provider_id": USCC,
                        "holder_id": USCC,
                        "amount_fen": FEN,
                        "clawed_back_fen": FEN,
                        "redemptions": COUNT,
                    }
                ),
            },
        }
    ),
    "Findings": obj(
        {"query": {"type": "string"}, "title": {"type": "string"}, "rows": {"type": "array"}}
    ),
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
        },
    },
}
