#!/usr/bin/env python3
"""An external-task worker for Guichet, in plain Python (standard library only).

It fetches and locks tasks of topic `credit-check` (step `credit_check` of
`tax.invoice_quota`), decides, and completes them with data; a task it cannot handle is
reported as a failure, which Guichet retries and, when retries run out, turns into an
incident for the administrator.

    GUICHET_URL=http://127.0.0.1:8080 GUICHET_TOKEN=gch_... \
        python3 examples/workers/credit_check.py            # runs until stopped
    python3 examples/workers/credit_check.py --once         # until no task is left

The token is a staff token of a member of the step's group (`credit.bot` in
`tax.workers`): `guichet token issue credit.bot`.
"""

import argparse
import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request

TOPIC = "credit-check"


def call(base, token, path, body):
    req = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def rate(task):
    """The credit system, reduced to a rule: a big jump needs a good rating."""
    data = task["data"]
    current, requested = data.get("current_quota", 0), data["requested_quota"]
    if requested > 10 * max(current, 1):
        return "refuse", {"credit_rating": "C"}
    return "approve", {"credit_rating": "A" if requested <= 2 * max(current, 1) else "B"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=os.environ.get("GUICHET_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--token", default=os.environ.get("GUICHET_TOKEN"))
    # Letters, digits and - _ . : only, at most 64: what Guichet accepts as a worker id.
    default_worker = re.sub(r"[^A-Za-z0-9._:-]", "-", "credit-check:" + socket.gethostname())[:64]
    ap.add_argument("--worker", default=default_worker)
    ap.add_argument("--once", action="store_true", help="stop when no task is left")
    args = ap.parse_args()
    if not args.token:
        sys.exit("set GUICHET_TOKEN or pass --token")
    done = 0
    while True:
        status, body = call(args.url, args.token, "/api/external-tasks/fetch-and-lock",
                            {"worker": args.worker, "topics": [TOPIC], "max_tasks": 10,
                             "lease_ms": 60000})
        if status != 200:
            sys.exit("fetch-and-lock failed: %s %s" % (status, body))
        tasks = body["tasks"]
        for task in tasks:
            try:
                outcome, data = rate(task)
            except Exception as e:  # report, do not crash: Guichet retries
                call(args.url, args.token, "/api/external-tasks/%s/failure" % task["task"],
                     {"worker": args.worker, "message": "credit check failed: %r" % e,
                      "retry_in_ms": 5000})
                continue
            status, body = call(args.url, args.token,
                                "/api/external-tasks/%s/complete" % task["task"],
                                {"worker": args.worker, "outcome": outcome, "data": data})
            if status == 200:
                done += 1
                print("%s %s -> %s" % (task["case_number"], task["task"], outcome), flush=True)
            else:
                # 409: the lease expired and another worker has the task; nothing to do.
                print("%s not completed: %s %s" % (task["task"], status, body), file=sys.stderr)
        if not tasks:
            if args.once:
                print("done: %d task(s)" % done, flush=True)
                return
            time.sleep(1)


if __name__ == "__main__":
    main()
