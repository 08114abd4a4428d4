"""Cluster commands of the `storm` console script: the daemons (`storm nimbus`,
`storm supervisor`, `storm cluster up`), the requests to nimbus (`submit`,
`list`, `kill`, `activate`, `deactivate`, `rebalance`, `logs`, `supervisors`)
and the cluster's CURVE keys (`storm keys generate`, `storm keys add`).
Each command reads the cluster config (defaults, storm.yaml, -c), does one
thing, and turns any StormError into one red line and exit code 2.

Registered on the app in _app.py; the daemons themselves live in storm.daemon."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._config import parse_overrides
from .._errors import ConfigError, StormError
from ._app import app, fail
from ._targets import FilterOpt

if TYPE_CHECKING:
    from ..daemon._client import NimbusClient
    from ..daemon._records import WorkerRow

cluster_app = typer.Typer(help="Run a whole cluster on this machine.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")
keys_app = typer.Typer(help="The cluster's CURVE keys (storm.security.curve).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

ConfigOpt = Annotated[
    list[str] | None,
    typer.Option("--config", "-c", metavar="KEY=VALUE",
                 help="Override a config key (repeatable), e.g. -c nimbus.port=7627."),
]
ConfFileOpt = Annotated[
    str | None,
    typer.Option("--conf-file", metavar="FILE",
                 help="storm.yaml to read (default: $STORM_CONF_FILE, else ~/.storm/storm.yaml)."),
]
NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The topology's name.", show_default=False)]
InsecureOpt = Annotated[bool, typer.Option(
    "--insecure", help="Listen beyond loopback without CURVE (storm.security.curve off): only on a "
                       "network you trust.")]


def _console() -> Console:
    return Console(highlight=False)


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except StormError as exc:
        raise fail(str(exc)) from None


def _conf(conf_file: str | None, config: list[str] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the merged cluster config, the -c overrides alone)."""
    from ..daemon._conf import load_conf

    overrides = parse_overrides(config or [])
    return load_conf(conf_file, overrides), overrides


def _client(conf: dict[str, Any]) -> NimbusClient:
    from ..daemon._client import NimbusClient

    return NimbusClient.from_conf(conf)


def _daemon_logging(name: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


# -- daemons ---------------------------------------------------------------------------
@app.command()
def nimbus(config: ConfigOpt = None, conf_file: ConfFileOpt = None, insecure: InsecureOpt = False) -> None:
    """Run nimbus, the master daemon, in the foreground (Ctrl-C stops it)."""
    with _user_errors():
        conf, _ = _conf(conf_file, config)
        from ..daemon._nimbus import Nimbus

        _daemon_logging("nimbus")
        daemon = Nimbus(conf, insecure=insecure)
        daemon.bind()
    daemon.serve()


@app.command()
def supervisor(
    config: ConfigOpt = None,
    conf_file: ConfFileOpt = None,
    keep_workers: Annotated[bool, typer.Option(
        "--keep-workers", help="On Ctrl-C/SIGTERM leave the workers running, for a restart to adopt them.")] = False,
    insecure: InsecureOpt = False,
) -> None:
    """Run a supervisor in the foreground: it runs this host's worker processes."""
    with _user_errors():
        conf, _ = _conf(conf_file, config)
        from ..daemon._supervisor import Supervisor

        _daemon_logging("supervisor")
        daemon = Supervisor(conf, keep_workers=keep_workers, insecure=insecure)
        daemon.bind()
    daemon.serve()


# -- requests ----------------------------------------------------------------------------
@app.command()
def submit(
    target: Annotated[str, typer.Argument(
        metavar="TARGET", help="The topology: a file (topologies/wordcount.py), file.py:Name, module:Name, "
                               "or a YAML topology file.",
        show_default=False)],
    name: Annotated[str | None, typer.Option("--name", "-n", help="Topology name (default: the class name).")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Worker processes (sets topology.workers).")] = None,
    config: ConfigOpt = None,
    conf_file: ConfFileOpt = None,
    filter_file: FilterOpt = None,
) -> None:
    """Package a topology's code and submit it to nimbus, which starts it."""
    from ..daemon._code import package_target
    from ..daemon._conf import topology_overrides
    from ._targets import with_yaml_variables

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    console = _console()
    with _user_errors():
        conf, overrides = _conf(conf_file, config)
        topo_conf = topology_overrides(overrides)
        if name:
            topo_conf["topology.name"] = name
        if workers is not None:
            topo_conf["topology.workers"] = workers
        topo_conf = with_yaml_variables(target, topo_conf, filter_file)
        client = _client(conf)
        client.endpoint()  # nimbus unreachable: say so before building anything
        pkg, spec = package_target(target, topo_conf)
        reply = client.submit(spec.name, pkg.target, pkg.archive, pkg.sha256, topo_conf)
    console.print(
        f"submitted topology '{reply['name']}': {reply['workers']} worker(s), {reply['tasks']} task(s), "
        f"code {pkg.sha256[:12]} ({len(pkg.files)} file(s), {len(pkg.archive)} bytes)", soft_wrap=True)
    if reply.get("note"):
        console.print(Text(reply["note"], style="yellow"), soft_wrap=True)


@app.command("list")
def list_(config: ConfigOpt = None, conf_file: ConfFileOpt = None) -> None:
    """List the topologies nimbus runs: status, workers, executors, uptime."""
    console = _console()
    with _user_errors():
        conf, _ = _conf(conf_file, config)
        reply = _client(conf).topologies()
    topologies = reply["topologies"]
    where = Text(str(reply.get("where") or ""), style="yellow" if not reply.get("supervisors") else "dim")
    if not topologies:
        console.print("no topologies running")
        console.print(where, soft_wrap=True)
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col, justify in (("name", "left"), ("status", "left"), ("workers", "right"),
                         ("executors", "right"), ("tasks", "right"), ("code", "right"), ("uptime", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    notes = []
    for t in topologies:
        style = {"ACTIVE": "green", "INACTIVE": "yellow", "KILLED": "red", "REBALANCING": "cyan"}.get(t["status"], "")
        table.add_row(t["name"], Text(t["status"], style=style), f"{t['running']}/{t['workers']}",
                      str(t["executors"]), str(t["tasks"]), f"v{t.get('code_version', 1)}", _duration(t["uptime"]))
        if t.get("upgrade"):
            notes.append(Text(f"{t['name']}: {t['upgrade']}", style="cyan"))
        if t.get("error"):
            notes.append(Text(f"{t['name']}: {t['error']}", style="red"))
        elif t.get("note"):
            notes.append(Text(f"{t['name']}: {t['note']}", style="yellow"))
    console.print(table)
    for note in notes:
        console.print(note, soft_wrap=True)
    console.print(where, soft_wrap=True)


WaitOpt = Annotated[float | None, typer.Option(
    "--wait", "-w", metavar="SECS", min=0,
    help="Seconds between deactivating and acting (default: topology.message.timeout.secs).")]


@app.command()
def kill(name: NameArg, wait: WaitOpt = None, config: ConfigOpt = None, conf_file: ConfFileOpt = None) -> None:
    """Deactivate a topology, wait, then stop its workers and remove it."""
    with _user_errors():
        conf, _ = _conf(conf_file, config)
        reply = _client(conf).kill(name, wait)
    _console().print(f"killed topology '{reply['name']}': its workers stop in {reply['wait']:g}s")


@app.command()
def activate(name: NameArg, config: ConfigOpt = None, conf_file: ConfFileOpt = None) -> None:
    """Activate a topology: its spouts call next_tuple again."""
    with _user_errors():
        conf, _ = _conf(conf_file, config)
        reply = _client(conf).activate(name)
    _console().print(f"activated topology '{reply['name']}'")


@app.command()
def deactivate(name: NameArg, config: ConfigOpt = None, conf_file: ConfFileOpt = None) -> None:
    """Deactivate a topology: its spouts stop calling next_tuple."""
    with _user_errors():
        conf, _ = _conf(conf_file, config)
        reply = _client(conf).deactivate(name)
    _console().print(f"deactivated topology '{reply['name']}'")


def _parallelism(items: list[str] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items or []:
        comp, sep, raw = item.partition("=")
        if not sep or not comp.strip() or not raw.strip().isdigit() or int(raw) < 1:
            raise ConfigError(f"bad -e option '{item}': write it as COMPONENT=PARALLELISM, e.g. -e split=3")
        out[comp.strip()] = int(raw)
    return out


@app.command()
def rebalance(
    name: NameArg,
    wait: WaitOpt = None,
    workers: Annotated[int | None, typer.Option("--num-workers", "-n", min=1, help="New number of workers.")] = None,
    executors: Annotated[list[str] | None, typer.Option(
        "--executors", "-e", metavar="COMPONENT=PAR", help="New parallelism of a component (repeatable).")] = None,
    config: ConfigOpt = None,
    conf_file: ConfFileOpt = None,
) -> None:
    """Spread a topology over a new number of workers and/or change parallelism.

    The topology is deactivated, given the wait to finish what is in flight, and
    restarted on its new layout (with acking on, spouts replay anything lost)."""
    with _user_errors():
        parallelism = _parallelism(executors)
        if workers is None and not parallelism:
            raise ConfigError("nothing to rebalance: give -n WORKERS and/or -e COMPONENT=PARALLELISM")
        conf, _ = _conf(conf_file, config)
        reply = _client(conf).rebalance(name, wait, workers, parallelism)
    pars = ", ".join(f"{c}={p}" for c, p in sorted(reply["parallelism"].items()))
    _console().print(f"rebalancing topology '{reply['name']}' in {reply['wait']:g}s to {reply['workers']} "
                     f"worker(s): {pars}", soft_wrap=True)


@app.command()
def supervisors(config: ConfigOpt = None, conf_file: ConfFileOpt = None) -> None:
    """List the supervisors nimbus knows: host, slots, load."""
    console = _console()
    with _user_errors():
        conf, _ = _conf(conf_file, config)
        sups = _client(conf).supervisors()
    if not sups:
        console.print("no supervisors registered")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("id", "host", "alive", "slots used", "ports", "load", "memory"):
        table.add_column(col)
    for s in sups:
        table.add_row(s["id"][:12], f"{s['host']} ({s.get('hostname', '')})",
                      Text("yes", style="green") if s["alive"] else Text("no", style="red"),
                      f"{s['used']}/{len(s['ports'])}", ",".join(map(str, s["ports"])),
                      f"{s.get('load', 0):.2f}", f"{s.get('mem_percent', 0):.0f}%")
    console.print(table)


@app.command()
def logs(
    name: NameArg,
    component: Annotated[str | None, typer.Option("--component", help="Only the workers running this component.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")] = False,
    lines: Annotated[int, typer.Option("--lines", min=1, help="Lines to show from the end of each log.")] = 50,
    config: ConfigOpt = None,
    conf_file: ConfFileOpt = None,
) -> None:
    """Show the log files of a topology's workers (from their supervisors)."""
    from ..daemon._client import request

    console = _console()
    with _user_errors():
        conf, _ = _conf(conf_file, config)
        client = _client(conf)
        info = client.info(name)
        workers = info["workers"]
        if component is not None:
            comps = info["topology"]["components"]
            if component not in comps:
                known = ", ".join(c for c in comps if not comps[c]["system"])
                raise ConfigError(f"topology '{name}' has no component '{component}'; its components: {known}")
            workers = [w for w in workers if component in w["components"]]
        if not workers:
            raise StormError(f"topology '{name}' has no workers assigned yet; try again in a moment")
        timeout = min(client.timeout, 10.0)

        def fetch(w: WorkerRow, offset: int | None) -> dict[str, Any]:
            endpoint = w.get("logs")
            if not endpoint:
                raise StormError(f"the supervisor of worker {w['index']} has no log server registered")
            return request(endpoint, {"op": "log", "topology": name, "index": w["index"], "offset": offset,
                                       "lines": lines}, timeout, "supervisor log server", client.curve)

        offsets: dict[int, int] = {}
        failed: list[str] = []
        for w in workers:
            try:
                reply = fetch(w, None)
            except StormError as exc:
                # One unreachable host should not hide the others' logs.
                failed.append(f"worker {w['index']} on {w['host']}: {exc}")
                console.print(Text(f"==> worker {w['index']} on {w['host']}:{w['port']}: {exc}", style="yellow"),
                              soft_wrap=True)
                continue
            offsets[w["index"]] = int(reply["offset"])
            console.print(Text(f"==> worker {w['index']} on {w['host']}:{w['port']} "
                               f"({', '.join(w['components'])}) {reply['file']} <==", style="bold"), soft_wrap=True)
            text = reply["data"].decode("utf-8", "replace")
            if text:
                console.print(text.rstrip("\n"), markup=False, soft_wrap=True)
        if len(failed) == len(workers):
            raise StormError(f"no worker log could be read: {failed[0]}")
    workers = [w for w in workers if w["index"] in offsets]
    if not follow:
        return
    stop = _StopFlag()
    partial: dict[int, str] = {}
    with stop:
        while not stop.requested:
            for w in workers:
                try:
                    reply = fetch(w, offsets[w["index"]])
                except StormError as exc:
                    console.print(Text(f"[w{w['index']}] {exc}", style="yellow"), soft_wrap=True)
                    continue
                offsets[w["index"]] = int(reply["offset"])
                text = partial.pop(w["index"], "") + reply["data"].decode("utf-8", "replace")
                if reply.get("rotated"):
                    console.print(Text(f"[w{w['index']}] (log rotated)", style="dim"))
                *full, rest = text.split("\n")
                if rest:
                    partial[w["index"]] = rest
                for line in full:
                    console.print(f"[w{w['index']}] {line}", markup=False, soft_wrap=True)
            sys.stdout.flush()
            stop.wait(0.5)


class _StopFlag:
    """Ctrl-C / SIGTERM set `requested` instead of raising (as `storm local` does)."""

    def __init__(self) -> None:
        self.requested = False
        self._saved: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.requested and time.monotonic() < deadline:
            time.sleep(0.05)


# -- everything on this machine ------------------------------------------------------------
def _wait(what: str, check: Callable[[], bool], procs: list[subprocess.Popen[bytes]],
          logs: list[Path], timeout: float, stop: _StopFlag) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for proc, log in zip(procs, logs, strict=True):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
                why = tail[0] if tail else f"exit code {proc.returncode}"
                raise StormError(f"{log.stem} exited while starting: {why} (log: {log})")
        if stop.requested:
            raise StormError("interrupted while starting the cluster")
        if time.monotonic() > deadline:
            raise StormError(f"{what} did not come up within {timeout:g}s; see {', '.join(map(str, logs))}")
        time.sleep(0.1)


@cluster_app.command("up")
def cluster_up(config: ConfigOpt = None, conf_file: ConfFileOpt = None, insecure: InsecureOpt = False) -> None:
    """Start nimbus and one supervisor on this machine; Ctrl-C stops them all."""
    from ..daemon._client import NimbusError
    from ..daemon._state import local_dir

    console = _console()
    with _user_errors():
        conf, _ = _conf(conf_file, config)
    base = local_dir(conf)
    log_dir = Path(conf["storm.log.dir"]).expanduser() if conf.get("storm.log.dir") else base / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    passthrough: list[str] = []
    if conf_file:
        passthrough += ["--conf-file", conf_file]
    for item in config or []:
        passthrough += ["-c", item]
    if insecure:
        passthrough.append("--insecure")
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    with _user_errors():
        client = _client(conf)
    stop = _StopFlag()
    exit_code = 0

    def start(daemon: str) -> subprocess.Popen[bytes]:
        log = log_dir / f"{daemon}.log"
        logs.append(log)
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "storm.cli", daemon, *passthrough], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        procs.append(proc)
        return proc

    def nimbus_up() -> bool:
        try:
            client._endpoint = None
            client.ping()
            return True
        except NimbusError:
            return False

    def supervisor_up(pid: int) -> Callable[[], bool]:
        def check() -> bool:
            try:
                return any(s["pid"] == pid and s["alive"] for s in client.supervisors())
            except NimbusError:
                return False
        return check

    with stop:
        try:
            with _user_errors():
                if nimbus_up():
                    raise StormError(f"a nimbus already answers at {client.endpoint()}; stop it or set nimbus.port")
                start("nimbus")
                _wait("nimbus", nimbus_up, procs, logs, 30, stop)
                sup = start("supervisor")
                _wait("the supervisor", supervisor_up(sup.pid), procs, logs, 30, stop)
                state = client.ping()["state"]
            console.print(Text("storm cluster up", style="bold green"))
            console.print(f"  nimbus      {client.endpoint()} (pid {procs[0].pid}), log {logs[0]}", soft_wrap=True)
            console.print(f"  supervisor  {len(conf['supervisor.slots.ports'])} slot(s) "
                          f"{conf['supervisor.slots.ports']} (pid {sup.pid}), log {logs[1]}", soft_wrap=True)
            console.print(f"  state       {state}", soft_wrap=True)
            console.print(f"  worker logs {log_dir}", soft_wrap=True)
            console.print("submit a topology:  storm submit topologies/wordcount.py\n"
                          "then:               storm list · storm logs NAME · storm kill NAME\n"
                          "Ctrl-C stops the cluster and its workers", soft_wrap=True)
            sys.stdout.flush()
            while not stop.requested:
                dead = [(p, log) for p, log in zip(procs, logs, strict=True) if p.poll() is not None]
                if dead:
                    p, log = dead[0]
                    console.print(Text(f"error: {log.stem} exited with code {p.returncode}; see {log}",
                                       style="bold red"), soft_wrap=True)
                    exit_code = 1
                    break
                stop.wait(0.5)
        finally:
            _stop_all(procs, float(conf["storm.worker.shutdown.timeout.secs"]) + 10)
    console.print("cluster stopped")
    raise typer.Exit(exit_code)


def _stop_all(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """Supervisor first (it stops its workers), then nimbus; kill what lingers."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# -- keys ------------------------------------------------------------------------------------
KeysDirOpt = Annotated[str | None, typer.Option(
    "--dir", metavar="DIR", help="Where the keys go (default: storm.security.keys.dir, ~/.storm/keys).")]


def _keys_dir(directory: str | None, conf_file: str | None, config: list[str] | None) -> Path:
    from .._security import keys_dir

    if directory:
        return Path(directory).expanduser()
    conf, _ = _conf(conf_file, config)
    return keys_dir(conf)


@keys_app.command("generate")
def keys_generate(
    directory: KeysDirOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace keys that are there already.")] = False,
    config: ConfigOpt = None,
    conf_file: ConfFileOpt = None,
) -> None:
    """Write the cluster's CURVE key pair and an admin client pair.

    DIR/cluster.key(_secret) go to every nimbus and supervisor host (with
    authorized/ and admin/); DIR/client.key(_secret) and DIR/cluster.key to
    every machine the CLI runs on."""
    from .._security import generate

    with _user_errors():
        d = _keys_dir(directory, conf_file, config)
        written = generate(d, force=force)
    console = _console()
    console.print(f"wrote the cluster's CURVE keys in {d}:", soft_wrap=True)
    for p in written:
        console.print(f"  {p}", soft_wrap=True, markup=False)
    console.print("turn CURVE on with -c storm.security.curve=true (or in storm.yaml) on every daemon and "
                  f"client{'' if directory is None else f', and storm.security.keys.dir={d}'}", soft_wrap=True)


@keys_app.command("add")
def keys_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Name of the new client key pair.", show_default=False)],
    admin: Annotated[bool, typer.Option(
        "--admin", help="Allow the key to submit, kill, rebalance, activate and deactivate, and to run "
                  "`storm query NAME` against the cluster (else read only).")] = False,
    directory: KeysDirOpt = None,
    config: ConfigOpt = None,
    conf_file: ConfFileOpt = None,
) -> None:
    """Make a new client key pair and authorize it (read-only unless --admin)."""
    from .._security import add_client

    with _user_errors():
        d = _keys_dir(directory, conf_file, config)
        written = add_client(d, name, admin=admin)
    console = _console()
    console.print(f"wrote client key '{name}' ({'admin' if admin else 'read only'}):", soft_wrap=True)
    for p in written:
        console.print(f"  {p}", soft_wrap=True, markup=False)
    console.print(f"copy {d}/authorized{' and admin' if admin else ''} to the nimbus and supervisor hosts; "
                  f"a client uses it with -c storm.security.client.key={d / (name + '.key_secret')}",
                  soft_wrap=True)
