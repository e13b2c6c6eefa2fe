"""A stand-in agent for the deadline benchmark, started in its own process group by the supervisor.

    python stand_in.py MODE TERM_LOG CHILDREN [DEPTH]

It prints one line, starts CHILDREN children (the first of which starts a grandchild; they keep the agent's
stdout open), and sleeps. MODE `stubborn`: it and every child note each SIGTERM in TERM_LOG (`pid unix-time`)
and carry on, so that only SIGKILL ends them. MODE `polite`: they note it and exit.
"""

import json
import os
import signal
import subprocess
import sys
import time

mode, term_log, children = sys.argv[1], sys.argv[2], int(sys.argv[3])
depth = int(sys.argv[4]) if len(sys.argv) > 4 else 0


def on_term(signum: int, frame: object) -> None:
    with open(term_log, "a") as fh:
        fh.write(f"{os.getpid()} {time.time()!r}\n")
    if mode == "polite":
        os._exit(0)


signal.signal(signal.SIGTERM, on_term)
for n in range(children):
    grandchildren = 1 if n == 0 and depth == 0 else 0
    subprocess.Popen([sys.executable, __file__, mode, term_log, str(grandchildren), str(depth + 1)])  # noqa: S603
if depth == 0:
    sys.stdout.write(json.dumps({"type": "system", "subtype": "init", "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
while True:
    time.sleep(1)
