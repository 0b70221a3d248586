"""WXBizMsgCrypt for the Dialogue Platform tests, written apart from the Rust code under
test (Python `cryptography`, which moto already brings).

usage: python3 tests/chatbot_crypto.py encrypt KEY RECEIVE_ID < plaintext  -> base64
       python3 tests/chatbot_crypto.py decrypt KEY < base64                 -> JSON {msg, receive_id}
"""

import base64
import json
import os
import struct
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def main() -> None:
    op, key_b64 = sys.argv[1], sys.argv[2]
    key = base64.b64decode(key_b64 + "=")
    data = sys.stdin.buffer.read()
    if op == "encrypt":
        raw = os.urandom(16) + struct.pack(">I", len(data)) + data + sys.argv[3].encode()
        pad = 32 - len(raw) % 32
        raw += bytes([pad]) * pad
        enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
        sys.stdout.write(base64.b64encode(enc.update(raw) + enc.finalize()).decode())
    else:
        dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
        raw = dec.update(base64.b64decode(data.strip())) + dec.finalize()
        raw = raw[: -raw[-1]]
        (n,) = struct.unpack(">I", raw[16:20])
        sys.stdout.write(json.dumps({"msg": raw[20 : 20 + n].decode(), "receive_id": raw[20 + n :].decode()}))


if __name__ == "__main__":
    main()
