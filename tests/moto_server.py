"""moto's server (DynamoDB + S3 on one port) with requests applied one at a time.

moto implements a conditional UpdateItem/PutItem as get -> check -> put without a lock,
and its stock server is threaded, so two racing conditional writes can both succeed.
Real DynamoDB applies conditional writes to an item atomically. Serialising requests
restores that guarantee, which the dedup and token-lease tests depend on.

SQS ReceiveMessage long-polls (the outbox worker waits up to a second for a job): held
under the same lock, every S3 and Secrets Manager call behind it waited for the poll to
end, and a push's media staging (half of WeChat's 5 s) missed its budget 3 runs in 10.
Receives are serialised among themselves only, as real SQS never makes other calls wait
on a long poll.

usage: python3 tests/moto_server.py PORT
"""

import os
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    port = int(sys.argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()
    receive_lock = threading.Lock()

    def serialised(environ, start_response):
        receive = environ.get("HTTP_X_AMZ_TARGET", "") == "AmazonSQS.ReceiveMessage"
        with receive_lock if receive else lock:
            # Materialise the body inside the lock: WSGI apps may stream lazily.
            return list(app(environ, start_response))

    run_simple("127.0.0.1", port, serialised, threaded=True)


if __name__ == "__main__":
    main()
