"""A pystorm Spout (pystorm's public API only): numbers 0 .. mltest.count-1,
each with its number as tuple id; a failed id is emitted again; every acked id
is appended to <itest.dir>/acks-<task>-<pid>.log. argv[1] picks pystorm's
serializer (json or msgpack)."""

import os
import sys

from pystorm import Spout


class NumberSpout(Spout):
    def initialize(self, storm_conf, context):
        self.count = int(storm_conf["mltest.count"])
        self.next_n = 0
        self.replay = []
        path = os.path.join(storm_conf["itest.dir"], f"acks-{context['taskid']}-{os.getpid()}.log")
        self.acks = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.log(f"number spout ready, {self.count} numbers", level="info")

    def next_tuple(self):
        if self.replay:
            n = self.replay.pop()
        elif self.next_n < self.count:
            n = self.next_n
            self.next_n += 1
        else:
            return
        self.emit([n], tup_id=n)

    def ack(self, tup_id):
        os.write(self.acks, f"{tup_id}\n".encode())

    def fail(self, tup_id):
        self.replay.append(tup_id)


if __name__ == "__main__":
    NumberSpout(serializer=sys.argv[1] if len(sys.argv) > 1 else "json").run()
