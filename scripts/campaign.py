#!/usr/bin/env python3
"""The fault campaign: a workload against three nodes, a nemesis injecting faults, and the
checker's verdict, for Strom or for Apache Kafka 4.4 with the same workload and faults.

    scripts/campaign.py strom --faults 1000 [--kinds kill,pause,...] [--per-run 10] [--out DIR]
    scripts/campaign.py kafka --faults 100 ...
    scripts/campaign.py both --faults 1000 --out DIR  # each run's faults against Strom, then Kafka
    scripts/campaign.py both --faults 1000 --out DIR --resume   # goes on where DIR stopped
    scripts/campaign.py report DIR [DIR...]       # one table from several campaigns' results

The campaign is a series of runs. A run starts a fresh cluster, starts `strom verify run` (the
workload: idempotent producers, group members and seeking consumers on a queue topic; a
consume-transform-produce loop in transactions, read_committed observers), then injects
`--per-run` faults of one kind, one after another: inject, hold (`--hold`, 3-12 s), heal, wait
until the cluster is whole again (every node up, every replica in sync). Then the workload
drains and reads everything back, and `strom verify check` judges the history. Runs cycle
through the kinds until `--faults` faults were injected. The history of a run with an anomaly
is kept in DIR/failed/; the others are deleted. `both` runs each run against Strom and then
against Kafka, with the same kind and the same drawn gaps and holds, so the two columns of the
table stay comparable however far a campaign got. `touch DIR/STOP` ends a campaign after its
current run, and `--resume` goes on with the runs DIR's results do not hold yet (a campaign of
a thousand faults per system takes longer than a working day on two cores).

DIR/results.jsonl gets one line per run; DIR/report.md the table (per fault kind: faults,
unavailability p50/p99/max, runs the cluster did not come back from, and every anomaly count).
Network faults need root (network namespaces); without it they are left out and said so.

Needs the release binary (or STROM_BIN) and confluent-kafka (tests/python/requirements.txt);
Kafka needs Java 17 and fetches its jars with Maven once (scripts/kafka.sh fetch).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from faults.cluster import faketime_library, make_cluster, strom_binary  # noqa: E402
from faults.nemesis import ALL_KINDS, ROOT_KINDS, SMALL_DISK_NODE, SMALL_DISK_SIZE, Nemesis  # noqa: E402
from faults.network import Network, netns_unusable  # noqa: E402
from faults.report import anomaly_counts, keep_examples, render, summarize  # noqa: E402

PREFIX = "verify"
PARTITIONS = 3  # per workload topic: `strom verify run`'s default
# Bounds: every wait below has one.
READY_S = 180
HEAL_S = 180
WORKLOAD_START_S = 120
DRAIN_S = 600


# Kinds the campaign cannot inject into Kafka here, and why (docs/campaign.md).
KAFKA_LEFT_OUT = {
    "clock-jump": "three Kafka nodes under libfaketime never formed their quorum on this machine",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


class HistoryTail:
    """Follows the workload's history as it is written: when each queue partition last had a
    write acknowledged and when a transaction last committed (the campaign's sign that the
    cluster serves again)."""

    def __init__(self, path: Path, partitions: int):
        self.path, self.partitions = path, partitions
        self.at = 0
        self.last_ack: dict[int, float] = {}
        self.last_commit = 0.0

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.at)
                chunk = f.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1  # a line being written is read next time
        self.at += end
        for line in chunk[:end].splitlines():
            if b'"type":"ack"' in line and f'"topic":"{PREFIX}-queue"'.encode() in line:
                event = json.loads(line)
                self.last_ack[event["partition"]] = max(self.last_ack.get(event["partition"], 0), event["t"])
            elif b'"type":"txn_end"' in line and b'"outcome":"committed"' in line:
                self.last_commit = max(self.last_commit, json.loads(line)["t"])

    def acked_everywhere_since(self, since_ms: float) -> bool:
        """Every queue partition had a write acknowledged, and a transaction committed, since."""
        self._read()
        return self.last_commit > since_ms and all(self.last_ack.get(p, 0) > since_ms for p in range(self.partitions))


def why_not_whole(cluster, tail: HistoryTail, since_ms: float) -> str:
    reasons = [f"node {i} is not running" for i, n in cluster.nodes.items() if not n.alive]
    reasons += [f"node {i} is paused" for i, n in cluster.nodes.items() if n.paused]
    reasons += [f"node {i} does not see every replica in sync" for i in cluster.nodes if not cluster.node_whole(i)]
    tail.acked_everywhere_since(since_ms)
    quiet = [p for p in range(tail.partitions) if tail.last_ack.get(p, 0) <= since_ms]
    if quiet:
        reasons.append(f"no write acknowledged since the heal on queue partition(s) {quiet}")
    if tail.last_commit <= since_ms:
        reasons.append("no transaction committed since the heal")
        reasons.append(cluster.coordinator_views(f"{PREFIX}-txn-group"))
    return "; ".join(reasons) or "whole now"


def run_once(args, system: str, run: int, kind: str, count: int, out: Path) -> dict:
    """One run: a fresh cluster, the workload, `count` faults of one kind, the verdict."""
    name = f"{system}-run-{run}"
    work = Path(args.work) / name
    history = out / f"{name}.history.jsonl"
    faults_file = out / f"{name}.faults.jsonl"
    network = Network(args.net)
    result: dict = {"system": system, "run": run, "kind": kind, "injected": 0, "recovered": True}
    # Drawn per run, so both systems (and a resumed campaign) see the same gaps and holds.
    random.seed(None if args.seed is None else f"{args.seed}:{run}")
    workload = cluster = None
    try:
        network.up()
        cluster = make_cluster(system, work, network, args.set)
        if kind == "disk-full":
            cluster.give_small_disk(SMALL_DISK_NODE, SMALL_DISK_SIZE)
        if kind == "clock-jump":
            for node in cluster.nodes.values():
                node.fake_clock(faketime_library())
        cluster.start()
        if not wait_for(cluster.brokers_registered, READY_S):
            raise RuntimeError(f"the cluster did not start within {READY_S} s")
        workload_log = open(out / f"{name}.workload.log", "wb")
        workload = subprocess.Popen(
            [str(strom_binary()), "verify", "run", "-b", cluster.bootstrap, "--history", str(history),
             "--prefix", PREFIX, "--rate", str(args.rate)]
            + (["--producer-debug", args.producer_debug] if args.producer_debug else []),
            stdout=workload_log, stderr=workload_log, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        tail = HistoryTail(history, PARTITIONS)
        if not wait_for(lambda: tail.acked_everywhere_since(0), WORKLOAD_START_S):
            raise RuntimeError(f"the workload had no write acknowledged on every partition within {WORKLOAD_START_S} s")
        if cluster.wait_healthy(READY_S) is None:
            raise RuntimeError("the cluster was never whole with the workload running")
        nemesis = Nemesis(cluster, PREFIX, log, tail.acked_everywhere_since)
        with open(faults_file, "w") as faults_out:
            for i in range(count):
                time.sleep(random.uniform(*args.gap))  # load between faults, not a synchronisation
                started = time.time() * 1000
                fault = nemesis.inject(kind)
                log(f"{system} run {run} fault {i + 1}/{count}: {fault.kind}: {fault.detail}")
                time.sleep(random.uniform(*args.hold))  # how long the fault lasts
                healed = time.time() * 1000
                fault.heal()
                exits_before = len(cluster.exits)
                took = cluster.wait_healthy(HEAL_S, lambda: tail.acked_everywhere_since(healed))
                exited = cluster.exits[exits_before:]
                if exited:
                    log(f"{system} run {run}: node(s) {exited} exited by themselves after the heal; started again")
                if took is None:
                    result["recovered"] = False
                    log(f"{system} run {run}: not whole {HEAL_S} s after healing {fault.kind}: {why_not_whole(cluster, tail, healed)}")
                record = {"kind": fault.kind, "detail": fault.detail, "nodes": fault.nodes,
                          "start": started, "healed": healed,
                          "whole_after_ms": None if took is None else round(took * 1000),
                          "exited": exited}  # fmt: skip
                faults_out.write(json.dumps(record) + "\n")
                faults_out.flush()
                if took is None:
                    break
        # The fault windows end where the next one starts; the last one where the drain does.
        end = time.time() * 1000
        workload.send_signal(signal.SIGTERM)
        try:
            workload.wait(timeout=DRAIN_S)
        except subprocess.TimeoutExpired:
            workload.kill()
            result["workload_timeout"] = True
        windows = [json.loads(line) for line in faults_file.read_text().splitlines()]
        result["injected"] = len(windows)
        for this, following in zip(windows, windows[1:] + [None]):
            this["end"] = following["start"] if following else end
        faults_file.write_text("".join(json.dumps(w) + "\n" for w in windows))
        checked = subprocess.run(
            [str(strom_binary()), "verify", "check", str(history), "--json", "--faults", str(faults_file)],
            capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        verdict = json.loads(checked.stdout) if checked.stdout.strip() else {}
        if not verdict:
            raise RuntimeError(f"strom verify check gave no verdict: {checked.stderr.strip()[-500:]}")
        result["verdict"] = keep_examples(verdict)
    except Exception as e:  # noqa: BLE001 - a run that breaks is reported, the campaign goes on
        result["error"] = f"{type(e).__name__}: {e}"
        log(f"{system} run {run} ({kind}) broke: {result['error']}")
    finally:
        if workload is not None and workload.poll() is None:
            workload.kill()
            workload.wait(timeout=60)
        if cluster is not None:
            cluster.close()
        network.down()
    anomalies = sum(anomaly_counts(result).values())
    failed = anomalies or "error" in result or not result["recovered"]
    if failed or args.keep_all:
        keep = out / ("failed" if failed else "kept") / name
        keep.mkdir(parents=True, exist_ok=True)
        for f in out.glob(f"{name}.*"):
            shutil.move(str(f), keep / f.name)
        for f in work.glob("*.log"):
            shutil.copy(f, keep / f.name)
        for f in work.glob("node-*/server.log"):
            shutil.copy(f, keep / f"{f.parent.name}.server.log")
    else:
        for f in out.glob(f"{name}.*"):
            f.unlink()
    shutil.rmtree(work, ignore_errors=True)
    return result


def campaign(args) -> int:
    out = Path(args.out or f"campaign-{args.system}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    kinds = args.kinds.split(",") if args.kinds else list(ALL_KINDS)
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown:
        sys.exit(f"unknown fault kind(s) {unknown}; known: {', '.join(ALL_KINDS)}")
    if args.net == "auto":
        args.net = "loopback" if netns_unusable() else "netns"
    if args.net != "netns":
        skipped = [k for k in kinds if k in ROOT_KINDS]
        kinds = [k for k in kinds if k not in ROOT_KINDS]
        if skipped:
            log(f"without root and network namespaces ({netns_unusable() or 'loopback chosen'}): leaving out {skipped}")
    if "clock-jump" in kinds and faketime_library() is None:
        kinds.remove("clock-jump")
        log("libfaketime is not installed (Debian: faketime): leaving out clock-jump")
    if not kinds:
        sys.exit("no fault kind left to inject")
    systems = ["strom", "kafka"] if args.system == "both" else [args.system]
    if "kafka" in systems and all(kind in KAFKA_LEFT_OUT for kind in kinds):
        sys.exit(f"no fault kind left to inject into Kafka: {KAFKA_LEFT_OUT}")
    results_file = out / "results.jsonl"
    done = [json.loads(line) for line in results_file.read_text().splitlines()] if results_file.exists() else []
    if done and not args.resume:
        sys.exit(f"{results_file} holds {len(done)} run(s): --resume to go on with them, or another --out")
    # A broken run counts as one fault, so the loop ends.
    injected = {system: sum(max(r.get("injected", 0), 1) for r in done if r["system"] == system) for system in systems}
    finished = {(r["system"], r["run"]) for r in done}
    log(f"{args.system}: {args.faults} faults, {args.per_run} per run, kinds {kinds}, network {args.net}; results in {out}"
        + (f"; resuming after {len(done)} run(s) ({injected})" if done else ""))  # fmt: skip
    stop_file = out / "STOP"
    stop_file.unlink(missing_ok=True)
    started = time.monotonic()
    run = 0
    goal = {system: args.faults for system in systems}
    if "kafka" in goal and args.kafka_faults is not None:
        goal["kafka"] = args.kafka_faults
    while any(injected[system] < goal[system] for system in systems):
        if stop_file.exists():
            log(f"stopping before run {run + 1}, as {stop_file} asks; --resume goes on from here")
            break
        kind = kinds[run % len(kinds)]
        run += 1
        for system in systems:
            if (system, run) in finished or injected[system] >= goal[system]:
                continue
            if system == "kafka" and kind in KAFKA_LEFT_OUT:
                log(f"kafka run {run}: {kind} left out: {KAFKA_LEFT_OUT[kind]}")
                continue
            count = min(args.per_run, goal[system] - injected[system])
            result = run_once(args, system, run, kind, count, out)
            with open(results_file, "a") as f:
                f.write(json.dumps(result) + "\n")
            injected[system] += max(result.get("injected", 0), 1)
            log(f"{system} run {run} done: {describe(result)}; {injected[system]}/{goal[system]} faults, "
                f"{time.monotonic() - started:.0f} s")  # fmt: skip
    rows = summarize([json.loads(line) for line in results_file.read_text().splitlines()])
    (out / "report.md").write_text(render(rows))
    print(render(rows))
    return 0 if all(r["clean"] for r in rows) else 1


def describe(result: dict) -> str:
    if "error" in result:
        return f"error: {result['error']}"
    found = {k: v for k, v in anomaly_counts(result).items() if v}
    return f"{result['kind']}: {'anomalies ' + json.dumps(found) if found else 'clean'}" + (
        "" if result["recovered"] else "; the cluster did not come back"
    )


def seconds_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    return float(low), float(high or low)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("system", choices=["strom", "kafka", "both", "report"])
    parser.add_argument("dirs", nargs="*", help="report: the campaigns' result directories")
    parser.add_argument("--faults", type=int, default=30)
    parser.add_argument("--kafka-faults", type=int, help="both: Kafka's share, when smaller than --faults "
                        "(its runs then stop; Strom's go on)")
    parser.add_argument("--per-run", type=int, default=10)
    parser.add_argument("--kinds", help=f"comma-separated, default all: {','.join(ALL_KINDS)}")
    parser.add_argument("--net", choices=["auto", "netns", "loopback"], default="auto")
    parser.add_argument("--rate", type=int, default=100, help="records/s per producer")
    parser.add_argument("--hold", type=seconds_range, default=(3.0, 12.0), metavar="MIN-MAX",
                        help="how long a fault lasts, seconds drawn uniformly (default 3-12)")
    parser.add_argument("--gap", type=seconds_range, default=(1.0, 3.0), metavar="MIN-MAX",
                        help="load without faults between two, seconds (default 1-3)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--resume", action="store_true", help="go on with the runs DIR/results.jsonl lacks")
    parser.add_argument("--keep-all", action="store_true", help="keep every run's history and logs (DIR/kept/)")
    parser.add_argument("--out", help="result directory (default campaign-SYSTEM-DATE)")
    parser.add_argument("--work", default="/tmp/strom-campaign", help="the nodes' data directories")
    parser.add_argument("--producer-debug", metavar="CONTEXTS",
                        help="librdkafka debug contexts for the workload's idempotent producers (in the workload log)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a node setting, for Strom and Kafka alike")  # fmt: skip
    args = parser.parse_args()
    if args.system == "report":
        results = []
        for d in args.dirs:
            results += [json.loads(line) for line in (Path(d) / "results.jsonl").read_text().splitlines()]
        print(render(summarize(results)))
        return 0
    return campaign(args)


if __name__ == "__main__":
    sys.exit(main())
