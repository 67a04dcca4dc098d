"""The partner sandbox in its own process for the benchmarks: prints its URL, serves until SIGTERM."""

import signal
import sys

from outputs.sandbox import PartnerSandbox


def main():
    sandbox = PartnerSandbox()
    url = sandbox.start(host="127.0.0.1", port=0)
    print(url, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sandbox.stop())
    sandbox.wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
