"""Kafka 4.4's own command-line tools against Strom, run as Kafka ships them
(`scripts/kafka.sh tool`): the log-directory tools on a broker with two log directories."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker
from support import kafka_tool as tool

CALL_TIMEOUT_S = 30


@pytest.fixture
def two_dir_broker(tmp_path: Path):
    instance = Broker(tmp_path / "strom", extra_log_dirs=1)
    Broker.in_use.append(instance)
    instance.start()
    yield instance
    Broker.in_use.remove(instance)
    instance.stop()


def log_dirs(broker: Broker) -> dict[str, str]:
    """`kafka-log-dirs --describe`: {partition: its log directory}."""
    out = tool("kafka-log-dirs", "--describe", "--bootstrap-server", broker.bootstrap, "--broker-list", "1")
    described = json.loads(out.strip().splitlines()[-1])
    placed = {}
    for log_dir in described["brokers"][0]["logDirs"]:
        assert log_dir["error"] is None, log_dir
        for partition in log_dir["partitions"]:
            placed[partition["partition"]] = log_dir["logDir"]
    return placed


def test_kafka_log_dirs_and_reassign_partitions_move_a_log_between_directories(two_dir_broker, tmp_path):
    broker = two_dir_broker
    topic = f"tools-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(CALL_TIMEOUT_S)
    dirs = {str(broker.data_dir), str(broker.extra_log_dirs[0])}
    before = log_dirs(broker)
    assert {before[f"{topic}-0"], before[f"{topic}-1"]} == dirs, "one partition in each directory"

    target = next(d for d in dirs if d != before[f"{topic}-0"])
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": 0, "replicas": [1], "log_dirs": [target]}]}))
    executed = tool("kafka-reassign-partitions", "--bootstrap-server", broker.bootstrap,
                    "--reassignment-json-file", str(plan), "--execute")
    assert f"Successfully started moving log directory to {target}" in executed, executed
    verified = tool("kafka-reassign-partitions", "--bootstrap-server", broker.bootstrap,
                    "--reassignment-json-file", str(plan), "--verify")
    assert f"Reassignment of replica {topic}-0-1 completed successfully" in verified, verified
    after = log_dirs(broker)
    assert after[f"{topic}-0"] == target
    assert after[f"{topic}-1"] == before[f"{topic}-1"]
    assert (Path(target) / f"{topic}-0").is_dir()
