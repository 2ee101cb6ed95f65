//! The persisted ledger against a real run: known messages to known objects
//! come out of `torpor bill` as exactly those counts.

use crate::support::{unique_name, Client, Node};
use std::process::Command;
use std::time::{Duration, Instant};

fn bill_json(node: &Node) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_torpor"))
        .arg("bill")
        .arg("--config")
        .arg(node.config_path())
        .args(["--json", "--by-object"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "torpor bill failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn messages_in(bill: &serde_json::Value, name: &str) -> Option<u64> {
    bill["by_object"]
        .as_array()?
        .iter()
        .find(|o| o["class"] == "Bench" && o["name"] == name)?["usage"]["ws_messages_in"]
        .as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_counts_exactly_the_messages_sent() {
    let node = Node::start();
    let sent = [
        (unique_name("ledger-a"), 17u64),
        (unique_name("ledger-b"), 40),
        (unique_name("ledger-c"), 3),
    ];
    for (name, count) in &sent {
        let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
        for i in 0..*count {
            assert_eq!(client.request(&format!("echo:{i}")).await, i.to_string());
        }
        // Auto-responses are counted apart and never billed.
        assert_eq!(client.request("ping").await, "pong");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bill = bill_json(&node);
        let recorded: Vec<Option<u64>> = sent
            .iter()
            .map(|(name, _)| messages_in(&bill, name))
            .collect();
        let expected: Vec<Option<u64>> = sent.iter().map(|(_, count)| Some(*count)).collect();
        if recorded == expected {
            let total_in: u64 = sent.iter().map(|(_, c)| c).sum();
            assert_eq!(bill["usage"]["ws_messages_in"].as_u64(), Some(total_in));
            assert_eq!(bill["usage"]["auto_responses"].as_u64(), Some(3));
            // 3 upgrades + 60 messages / 20, with no per-message rounding.
            assert_eq!(bill["requests"]["quantity"].as_f64(), Some(6.0));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ledger holds {recorded:?}, sent {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
