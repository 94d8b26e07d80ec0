"""Verifies a message's DKIM signature with dkimpy, an implementation independent of
consento's. Usage: dkim_verify.py MESSAGE_FILE DNS_TXT_RECORD; exit 0 when it verifies.
The TXT record is answered for any name, as DNS would for the selector's domain."""
import sys

import dkim

message = open(sys.argv[1], "rb").read()
record = sys.argv[2].encode()
ok = dkim.verify(message, dnsfunc=lambda name, timeout=5: record)
print("verified" if ok else "NOT verified")
sys.exit(0 if ok else 1)
