"""Treasury's pure edge: bank statements in (camt.053, CSV), payment files out (pain.001, CSV).

Nothing here touches the ledger's application, a store or HTTP: bytes in, frozen data out, or
data in, bytes out. Money is ``int`` in the currency's minor unit (fen for CNY) throughout."""

from treasury.camt053 import iter_statement_lines
from treasury.pain001 import Payment, payment_file_csv, payment_file_pain001
from treasury.statements import (
    Balance,
    Batch,
    ParsedStatement,
    Statement,
    StatementInvalid,
    StatementLine,
    TransactionDetail,
    parse_statement,
)

__all__ = [
    "Balance",
    "Batch",
    "ParsedStatement",
    "Payment",
    "Statement",
    "StatementInvalid",
    "StatementLine",
    "TransactionDetail",
    "iter_statement_lines",
    "parse_statement",
    "payment_file_csv",
    "payment_file_pain001",
]
