//! The store over real TCP on 127.0.0.1.
use std::time::{Duration, Instant};

use super::*;

const TOKEN: &str = "secret";

fn server() -> StoreServer {
    StoreServer::bind("127.0.0.1:0", TOKEN).unwrap()
}

fn client(server: &StoreServer, name: &str) -> StoreClient {
    StoreClient::connect(&server.local_addr().to_string(), TOKEN, "run1", name, Duration::from_secs(5))
        .unwrap()
}

/// Runs `body` on `n` clients ("rank i"), each in its own thread, and returns their results.
fn on_clients<R: Send + 'static>(
    server: &StoreServer,
    n: usize,
    body: impl Fn(&mut StoreClient) -> R + Send + Sync + Clone + 'static,
) -> Vec<R> {
    let addr = server.local_addr().to_string();
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (addr, body) = (addr.clone(), body.clone());
            std::thread::spawn(move || {
                let name = format!("rank {i}");
                let mut c =
                    StoreClient::connect(&addr, TOKEN, "run1", &name, Duration::from_secs(5)).unwrap();
                body(&mut c)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn set_get_delete_and_compare_set() {
    let server = server();
    let mut c = client(&server, "rank 0");
    c.set("a", b"1").unwrap();
    assert_eq!(c.get("a", Duration::from_secs(1), "a").unwrap(), b"1");
    assert_eq!(c.compare_set("a", b"2", b"3").unwrap(), b"1", "no swap when expected differs");
    assert_eq!(c.compare_set("a", b"1", b"3").unwrap(), b"3");
    assert_eq!(c.compare_set("new", b"", b"x").unwrap(), b"x", "empty expected means absent");
    assert!(c.delete("a").unwrap());
    assert!(!c.delete("a").unwrap());
}

#[test]
fn get_waits_for_a_later_set() {
    let server = server();
    let addr = server.local_addr().to_string();
    let waiter = std::thread::spawn(move || {
        let mut c = StoreClient::connect(&addr, TOKEN, "run1", "rank 1", Duration::from_secs(5)).unwrap();
        c.get("late", Duration::from_secs(10), "the late key").unwrap()
    });
    std::thread::sleep(Duration::from_millis(200));
    client(&server, "rank 0").set("late", b"here").unwrap();
    assert_eq!(waiter.join().unwrap(), b"here");
}

#[test]
fn get_timeout_names_who_waited_for_what() {
    let server = server();
    let mut c = client(&server, "rank 3");
    let started = Instant::now();
    let err = c
        .get("ring/addr/2", Duration::from_millis(300), "the ring address of rank 2")
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.contains("rank 3") && err.contains("the ring address of rank 2"), "{err}");
}

#[test]
fn add_is_atomic_across_clients() {
    let server = server();
    on_clients(&server, 8, |c| {
        for _ in 0..50 {
            c.add("counter", 1).unwrap();
        }
    });
    assert_eq!(client(&server, "check").add("counter", 0).unwrap(), 400);
}

#[test]
fn barrier_releases_all_and_times_out_with_a_count() {
    let server = server();
    let results = on_clients(&server, 4, |c| c.barrier("start", 4, Duration::from_secs(10)));
    assert!(results.iter().all(|r| r.is_ok()));
    let err =
        client(&server, "rank 0").barrier("lonely", 3, Duration::from_millis(200)).unwrap_err().to_string();
    assert!(err.contains("1 of 3 arrived"), "{err}");
}

#[test]
fn wrong_token_is_refused() {
    let server = server();
    let err = StoreClient::connect(
        &server.local_addr().to_string(),
        "guess",
        "run1",
        "intruder",
        Duration::from_secs(2),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("wrong token") && err.contains("intruder"), "{err}");
}

#[test]
fn runs_do_not_see_each_others_keys() {
    let server = server();
    let addr = server.local_addr().to_string();
    let mut a = StoreClient::connect(&addr, TOKEN, "run-a", "a", Duration::from_secs(2)).unwrap();
    let mut b = StoreClient::connect(&addr, TOKEN, "run-b", "b", Duration::from_secs(2)).unwrap();
    a.set("k", b"a").unwrap();
    assert!(b.get("k", Duration::from_millis(100), "k").is_err());
}

#[test]
fn port_in_use_and_unreachable_store_are_clear_errors() {
    let server = server();
    let taken = server.local_addr().to_string();
    let err = StoreServer::bind(&taken, TOKEN).err().unwrap().to_string();
    assert!(err.contains(&format!("cannot listen on {taken}")) && err.contains("in use"), "{err}");
    // A port nobody listens on: bind, note it, close.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let started = Instant::now();
    let err = StoreClient::connect(&free, TOKEN, "run1", "rank 1", Duration::from_millis(500))
        .err()
        .unwrap()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(5), "no hang");
    assert!(err.contains("could not reach the rendezvous store") && err.contains(&free), "{err}");
}

#[test]
fn tokens_are_unique() {
    assert_ne!(new_token(), new_token());
    assert_eq!(new_token().len(), 32);
}
