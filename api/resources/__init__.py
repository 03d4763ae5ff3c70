"""Resources only translate HTTP: parse and check the body, call one ledger method, render."""
