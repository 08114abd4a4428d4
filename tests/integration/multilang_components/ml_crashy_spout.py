"""A pystorm Spout that survives its own restart: numbers 0 .. mltest.count-1
(tuple id = the number), skipping those already acked (read back from the
acks-*.log files of itest.dir at start); a failed id is emitted again. Once per
run (a marker file) it exits when it reaches mltest.spout.crash.on."""

import glob
import os
import sys

from pystorm import Spout


class CrashySpout(Spout):
    def initialize(self, storm_conf, context):
        self.dir = storm_conf["itest.dir"]
        self.crash_on = int(storm_conf["mltest.spout.crash.on"])
        acked = set()
        for p in glob.glob(os.path.join(self.dir, "acks-*.log")):
            with open(p) as f:
                acked.update(int(x) for x in f.read().split("\n")[:-1])
        self.todo = [n for n in range(int(storm_conf["mltest.count"]) - 1, -1, -1) if n not in acked]
        path = os.path.join(self.dir, f"acks-{context['taskid']}-{os.getpid()}.log")
        self.acks = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def next_tuple(self):
        if not self.todo:
            return
        n = self.todo.pop()
        if n == self.crash_on:
            try:
                os.close(os.open(os.path.join(self.dir, "spout-crashed"), os.O_CREAT | os.O_EXCL))
                os._exit(4)
            except FileExistsError:
                pass
        self.emit([n], tup_id=n)

    def ack(self, tup_id):
        os.write(self.acks, f"{tup_id}\n".encode())

    def fail(self, tup_id):
        self.todo.append(tup_id)


if __name__ == "__main__":
    CrashySpout(serializer=sys.argv[1] if len(sys.argv) > 1 else "json").run()
