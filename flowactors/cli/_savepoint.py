"""``flowactors savepoint HOST:PORT DIR``: ask a running job for a savepoint.

Posts to the job's monitoring server (``flowactors run --monitor HOST:PORT``,
or a ``MonitoringServer`` in a service) with the bearer token from
``FLOWACTORS_MONITOR_TOKEN``; the job keeps running. ``DIR`` is a path on the
job's machine. Prints the savepoint's path.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

TOKEN_ENV = "FLOWACTORS_MONITOR_TOKEN"


def trigger_savepoint(address: str, directory: str, timeout: float) -> int:
    base = address if "://" in address else f"http://{address}"
    request = urllib.request.Request(
        base.rstrip("/") + "/api/savepoints",
        data=json.dumps({"directory": os.path.abspath(directory)}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    token = os.environ.get(TOKEN_ENV)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            reason = exc.reason
        hint = f" (set {TOKEN_ENV})" if exc.code in (401, 403) and not token else ""
        print(f"flowactors savepoint: {exc.code}: {reason}{hint}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"flowactors savepoint: cannot reach {base}: {exc}", file=sys.stderr)
        return 1
    print(answer["path"])
    return 0
