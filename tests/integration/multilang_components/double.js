// A bolt written against Apache Storm's multi-lang protocol in plain JavaScript
// (no library): JSON messages each followed by a line "end". For [n, sq] it
// emits [n, sq, 2n] anchored to the input, then acks it. Even numbers ask for
// the task ids of the emit (the default), odd ones set need_task_ids false.
"use strict";
const fs = require("fs");
const path = require("path");
const readline = require("readline");

let lines = [];
let handshaken = false;
let taskIdReplies = 0;
let ticks = 0;

function send(msg) {
  process.stdout.write(JSON.stringify(msg) + "\nend\n");
}

function handle(msg) {
  if (!handshaken) {
    handshaken = true;
    fs.writeFileSync(path.join(msg.pidDir, String(process.pid)), "");
    send({ pid: process.pid });
    send({ command: "log", msg: `double.js ready as task ${msg.context.taskid} of ` +
           `${msg.context["task->component"][String(msg.context.taskid)]}`, level: 2 });
    return;
  }
  if (Array.isArray(msg)) {  // the task ids of an emit
    taskIdReplies += 1;
    return;
  }
  if (msg.stream === "__heartbeat") {
    send({ command: "sync" });
    return;
  }
  if (msg.stream === "__tick") {
    ticks += 1;
    if (ticks === 1) send({ command: "log", msg: `double.js got a tick of ${msg.tuple[0]}s`, level: 2 });
    send({ command: "metrics", name: "task_id_replies", params: taskIdReplies });
    send({ command: "ack", id: msg.id });
    return;
  }
  const [n, sq] = msg.tuple;
  const emit = { command: "emit", anchors: [msg.id], tuple: [n, sq, 2 * n] };
  if (n % 2 === 1) emit.need_task_ids = false;
  send(emit);
  send({ command: "ack", id: msg.id });
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line === "end") {
    const text = lines.join("\n");
    lines = [];
    if (text.trim()) handle(JSON.parse(text));
  } else {
    lines.push(line);
  }
});
process.stdin.on("end", () => process.exit(0));
