"""A pystorm Bolt (pystorm's public API only): emits [n, n*n] anchored to its
input. It fails every number divisible by mltest.fail.every the first time it
sees it, and (once per topology run, marked by a file in itest.dir) exits on
the numbers in mltest.crash.on and stops answering on those in mltest.hang.on.
argv[1] picks pystorm's serializer (json or msgpack)."""

import os
import sys
import time

from pystorm import Bolt


class SquareBolt(Bolt):
    auto_ack = False

    def initialize(self, storm_conf, context):
        self.dir = storm_conf["itest.dir"]
        self.fail_every = int(storm_conf.get("mltest.fail.every") or 0)
        self.crash_on = set(storm_conf.get("mltest.crash.on") or [])
        self.hang_on = set(storm_conf.get("mltest.hang.on") or [])
        self.failed_once = set()
        self.report_metric("started", 1)

    def _first_time(self, what, n):
        marker = os.path.join(self.dir, f"{what}-{n}")
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True

    def process(self, tup):
        n = tup.values[0]
        if self.fail_every and n % self.fail_every == 0 and n not in self.failed_once:
            self.failed_once.add(n)
            self.fail(tup)
            return
        if n in self.crash_on and self._first_time("crash", n):
            sys.stderr.write(f"square bolt crashing on {n}\n")
            sys.stderr.flush()
            os._exit(3)
        if n in self.hang_on and self._first_time("hang", n):
            time.sleep(3600)
        self.emit([n, n * n], anchors=[tup])
        self.ack(tup)


if __name__ == "__main__":
    SquareBolt(serializer=sys.argv[1] if len(sys.argv) > 1 else "json").run()
