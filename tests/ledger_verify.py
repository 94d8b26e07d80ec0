#!/usr/bin/env python3
"""An independent check of consento's consent proofs, written from the specifications
only (RFC 9162 Merkle trees, C2SP signed notes and checkpoints), sharing no code with
consento. It needs PyNaCl for Ed25519.

    ledger_verify.py bundle BUNDLE.json VERIFIER_KEY
    ledger_verify.py consistency OLD_CHECKPOINT NEW_CHECKPOINT PROOF.json VERIFIER_KEY

Exit status 0 when everything holds; otherwise each fault is printed and the status is 1.
"""

import base64
import hashlib
import hmac
import json
import sys

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey


def sha256(data):
    return hashlib.sha256(data).digest()


def leaf_hash(leaf):
    return sha256(b"\x00" + leaf)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def parse_verifier_key(text):
    name, key_id, key = text.strip().split("+", 2)
    raw = base64.b64decode(key)
    if raw[0] != 1 or len(raw) != 33:
        raise ValueError("not an Ed25519 verifier key")
    expected_id = sha256(name.encode() + b"\n" + raw)[:4]
    if expected_id.hex() != key_id:
        raise ValueError("the key id does not match the key")
    return name, expected_id, VerifyKey(raw[1:])


def open_note(note, verifier_key):
    """The checkpoint (origin, size, root) of a note signed by the key, or an error."""
    name, key_id, key = parse_verifier_key(verifier_key)
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    for line in signatures.splitlines():
        if not line.startswith("\u2014 "):
            raise ValueError("a signature line does not start with an em dash")
        signer, blob = line[2:].split(" ", 1)
        blob = base64.b64decode(blob)
        if signer != name or blob[:4] != key_id:
            continue
        try:
            key.verify(text.encode(), blob[4:])
        except BadSignatureError:
            raise ValueError("the checkpoint's signature does not verify")
        origin, size, root = text.split("\n")[:3]
        return origin, int(size), base64.b64decode(root)
    raise ValueError("the checkpoint carries no signature by the key")


def verify_inclusion(leaf, index, size, proof, root):
    """RFC 9162, section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_root, second_root, proof):
    """RFC 9162, section 2.1.4.2."""
    if first == second:
        return not proof and first_root == second_root
    if first == 0 or first > second:
        return first == 0 and not proof
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


def digest(salt, value):
    if value is None:
        return ""
    return hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()


def check_bundle(path, verifier_key):
    faults = []
    with open(path) as f:
        bundle = json.load(f)
    if bundle["verifier_key"].strip() != verifier_key.strip():
        faults.append("the bundle names another key than the one trusted")
    origin, size, root = open_note(bundle["checkpoint"], verifier_key)
    if size != bundle["tree_size"]:
        faults.append("tree_size is not the checkpoint's")
    if not bundle["events"]:
        faults.append("the bundle proves no event")
    for event in bundle["events"]:
        at = "leaf %d" % event["leaf_index"]
        leaf = base64.b64decode(event["leaf"])
        proof = [base64.b64decode(h) for h in event["inclusion_proof"]]
        if not verify_inclusion(leaf_hash(leaf), event["leaf_index"], size, proof, root):
            faults.append(at + ": not included in the signed tree")
        fields = json.loads(leaf)
        if fields != event["fields"]:
            faults.append(at + ": the decoded fields are not the leaf's")
        if fields["contact_id"] != bundle["contact_id"]:
            faults.append(at + ": the leaf is about another contact")
        personal = event.get("personal")
        if personal:
            for name in ("email", "ip", "user_agent", "source_url"):
                value = personal.get(name)
                if value is not None and digest(personal["salt"], value) != fields[name + "_digest"]:
                    faults.append(at + ": its %s does not match the leaf's digest" % name)
    return faults


def check_consistency(old_path, new_path, proof_path, verifier_key):
    with open(old_path) as f:
        _, first, first_root = open_note(f.read(), verifier_key)
    with open(new_path) as f:
        _, second, second_root = open_note(f.read(), verifier_key)
    with open(proof_path) as f:
        proof = [base64.b64decode(h) for h in json.load(f)["hashes"]]
    if not verify_consistency(first, second, first_root, second_root, proof):
        return ["the newer checkpoint does not extend the older one"]
    return []


def main(argv):
    try:
        if argv[1] == "bundle":
            faults = check_bundle(argv[2], argv[3])
        elif argv[1] == "consistency":
            faults = check_consistency(argv[2], argv[3], argv[4], argv[5])
        else:
            faults = ["unknown command " + argv[1]]
    except (ValueError, KeyError) as error:
        faults = [str(error)]
    for fault in faults:
        print(fault)
    return 1 if faults else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
