"""Entry point of the benchmark child processes: `python -m bench.child module:function '{"json": "args"}'`.

Sets Django up for DATABASE_URL (no migrate: the parent did it), runs the function, and prints its result
with this process's peak resident memory on one line the parent reads.
"""

import importlib
import json
import sys

from bench import harness


def main():
    func, args = sys.argv[1], json.loads(sys.argv[2])
    harness.configure(harness.os.environ["DATABASE_URL"], migrate=False, child=True)
    module, _, name = func.partition(":")
    result = getattr(importlib.import_module(module), name)(**args)
    result["peak_rss_mb"] = harness.peak_rss_mb()
    print(harness.RESULT_MARK + json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
