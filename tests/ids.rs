//! Object ids and addressing through the real binary: names give stable ids
//! across restarts, ids reach the same object, foreign or malformed ids are
//! refused, unique ids make new objects, unknown routes wake nothing.

use crate::support::{http_request, unique_name, HttpResponse, Node, NETWORK_TIMEOUT};

const ID_HEADER: &str = "x-torpor-object-id";

fn send(node: &Node, method: &str, path: &str) -> HttpResponse {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    http_request(node.http_addr(), request.as_bytes(), NETWORK_TIMEOUT).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_gives_the_same_id_across_a_restart() {
    let dir = std::env::temp_dir().join(unique_name("torpor-ids"));
    let path = format!("/counter/{}", unique_name("stable"));
    let first = {
        let node = Node::builder().data_dir(&dir).start();
        let response = send(&node, "POST", &path);
        assert_eq!(response.text(), "1");
        response
            .header(ID_HEADER)
            .expect("the response names its object")
    };
    assert_eq!(first.len(), 64);
    let node = Node::builder().data_dir(&dir).start();
    let response = send(&node, "GET", &path);
    assert_eq!(response.header(ID_HEADER).as_deref(), Some(first.as_str()));
    assert_eq!(response.text(), "1");
    // The id reaches the same object as the name.
    assert_eq!(
        send(&node, "POST", &format!("/counters/{first}")).text(),
        "2"
    );
    assert_eq!(send(&node, "GET", &path).text(), "2");
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn foreign_and_malformed_ids_are_refused_and_create_nothing() {
    let node = Node::start();
    // An id of the ROOMS namespace is not one of COUNTERS.
    let room = send(&node, "GET", &format!("/rooms/{}", unique_name("r")));
    let room_id = room.header(ID_HEADER).unwrap();
    let foreign = send(&node, "POST", &format!("/counters/{room_id}"));
    assert_eq!(foreign.status, 400, "{}", foreign.text());
    assert!(
        foreign.text().contains("not of namespace COUNTERS"),
        "{}",
        foreign.text()
    );

    let counter = send(&node, "POST", &format!("/counter/{}", unique_name("c")));
    let mut typo = counter.header(ID_HEADER).unwrap();
    let flipped = if typo.ends_with('0') { "1" } else { "0" };
    typo.replace_range(63.., flipped);
    assert_eq!(
        send(&node, "POST", &format!("/counters/{typo}")).status,
        400
    );
    let short = send(&node, "POST", "/counters/abc");
    assert_eq!(short.status, 400);
    assert!(
        short.text().contains("64 hex characters"),
        "{}",
        short.text()
    );
    assert_eq!(
        send(&node, "POST", &format!("/counters/{}", "zz".repeat(32))).status,
        400
    );
}

#[test]
fn unique_ids_make_new_objects_and_come_back_in_a_header() {
    let node = Node::start();
    let a = send(&node, "POST", "/counters");
    let b = send(&node, "POST", "/counters");
    assert_eq!((a.text(), b.text()), ("1".to_owned(), "1".to_owned()));
    let (a_id, b_id) = (a.header(ID_HEADER).unwrap(), b.header(ID_HEADER).unwrap());
    assert_ne!(a_id, b_id);
    assert_eq!(
        send(&node, "POST", &format!("/counters/{a_id}")).text(),
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_in_the_query_reaches_the_same_object_as_in_the_path() {
    let node = Node::start();
    let room = unique_name("q");
    let by_path = send(&node, "GET", &format!("/rooms/{room}")).header(ID_HEADER);
    let by_query = send(&node, "GET", &format!("/chat?room={room}")).header(ID_HEADER);
    assert_eq!(by_path, by_query);
    let missing = send(&node, "GET", "/chat");
    assert_eq!(missing.status, 400);
    assert!(missing.text().contains("room"), "{}", missing.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_route_is_404_and_wakes_nothing() {
    let node = Node::start();
    for path in ["/nowhere", "/counter", "/counter/a/b", "/counters/"] {
        assert_eq!(send(&node, "GET", path).status, 404, "{path}");
    }
    let metrics = node.admin_get("/metrics").await.text();
    let wakes = metrics
        .lines()
        .find(|l| l.starts_with("torpor_edge_wakes_total "))
        .map_or(0.0, |l| {
            l.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
        });
    assert_eq!(wakes, 0.0, "{metrics}");
}
