//! `strom cluster` against a three-node cluster: describing it, listing brokers and the
//! quorum, electing preferred leaders, and decommissioning a broker (every replica moves off
//! it, with the data, and the command says when it may be stopped).

use std::process::{Command, Output};
use std::time::Duration;

use rdkafka::Offset;
use strom_testkit::{poll_until, Admin, Cluster, Consumer, Producer, Rec};

const WAIT: Duration = Duration::from_secs(40);

/// Runs `strom cluster ARGS` against `bootstrap`, bounded in time by the command's own
/// timeouts (each request and the decommission wait).
fn cluster_command(bootstrap: &str, args: &[&str]) -> Output {
    Command::new(strom_testkit::bin!())
        .arg("cluster")
        .args(args)
        .args(["--bootstrap-server", bootstrap, "--timeout-ms", "20000"])
        .output()
        .expect("run strom cluster")
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn strom_cluster_describes_the_cluster_and_decommissions_a_broker() {
    let mut cluster = Cluster::start(
        strom_testkit::bin!(),
        3,
        &[
            ("broker.session.timeout.ms", "3000"),
            ("broker.heartbeat.interval.ms", "500"),
        ],
    );
    let bootstrap = cluster.bootstrap();
    poll_until(WAIT, "three brokers listed", || {
        let out = cluster_command(&bootstrap, &["brokers"]);
        (out.status.success() && String::from_utf8_lossy(&out.stdout).lines().count() == 3).then_some(())
    });
    let describe = stdout_of(&cluster_command(&bootstrap, &["describe"]));
    assert!(describe.contains("brokers: 3"), "{describe}");
    assert!(describe.contains("metadata quorum:"), "{describe}");
    assert_eq!(describe.matches("voter ").count(), 3, "{describe}");
    let quorum = stdout_of(&cluster_command(&bootstrap, &["quorum"]));
    assert!(quorum.starts_with("leader "), "{quorum}");

    Admin::new(&bootstrap)
        .create_replicated_topic("spread", 6, 2, &[], false)
        .expect("create");
    let values: Vec<String> = (0..120).map(|i| format!("d-{i}")).collect();
    let recs: Vec<Rec> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Rec::value(v.clone()).partition(i as i32 % 6))
        .collect();
    Producer::new(&bootstrap, &[("acks", "all")]).send_all_ok("spread", &recs);

    // A dry run lists the moves and changes nothing.
    let dry = stdout_of(&cluster_command(
        &bootstrap,
        &["decommission", "--broker", "3", "--dry-run"],
    ));
    assert!(dry.contains("would move off broker 3"), "{dry}");
    assert!(
        !dry.contains(" -> [3") && !dry.contains(", 3]"),
        "broker 3 is no target: {dry}"
    );

    let out = stdout_of(&cluster_command(
        &bootstrap,
        &["decommission", "--broker", "3", "--wait-s", "60"],
    ));
    assert!(out.contains("broker 3 holds no replica any more"), "{out}");
    let describe = stdout_of(&cluster_command(&bootstrap, &["describe"]));
    assert!(describe.contains("under-replicated or offline: 0"), "{describe}");
    // Broker 3 can go: every record is still there, from brokers 1 and 2.
    let status = cluster.node(3).sigterm_and_wait();
    assert!(status.success());
    let live = format!("{},{}", cluster.nodes[0].bootstrap(), cluster.nodes[1].bootstrap());
    let consumer = Consumer::new(&live);
    let mut read = Vec::new();
    for partition in 0..6 {
        read.extend(
            consumer
                .read_to_end("spread", partition, Offset::Beginning)
                .into_iter()
                .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()),
        );
    }
    read.sort();
    let mut expected = values.clone();
    expected.sort();
    assert_eq!(read, expected);

    // Preferred elections: nothing to do when every preferred replica leads.
    let elect = stdout_of(&cluster_command(&live, &["elect-leaders", "--partition", "spread"]));
    assert!(elect.contains("leader(s) elected"), "{elect}");
    // Bad input: one clear line, nothing changed.
    let bad = cluster_command(&live, &["reassign", "--move", "spread=1,2"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("TOPIC:PARTITION"));
}
