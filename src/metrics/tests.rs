use std::io::{Read, Write};
use std::sync::Arc;

use super::*;

fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Whether `text` has a sample of `name` with all of `labels` (any order) and `value`.
fn has_sample(text: &str, name: &str, labels: &[&str], value: &str) -> bool {
    text.lines().any(|l| {
        l.starts_with(&format!("{name}{{"))
            && labels.iter().all(|p| l.contains(p))
            && l.ends_with(&format!(" {value}"))
    })
}

#[test]
fn rank_series_carry_run_rank_and_node_and_follow_the_naming_rules() {
    let m = RankMetrics::new("exp", 3, 1, &[("version", "0.1.0")]);
    m.observe_step(
        StepParts { data_wait: 0.001, forward_backward: 0.02, allreduce: 0.005, optimizer: 0.002 },
        16,
    );
    let stats = [("Loss/G", 0.7), ("D/real", 1.5), ("GradNorm/D", 3.0), ("SV0/G", 12.5)];
    m.set_tick(&stats.into_iter().map(|(k, v)| (k.to_string(), v)).collect(), 4096, 250.0);
    let text = render(&m.registry);
    let ids = [r#"node="1""#, r#"rank="3""#, r#"run="exp""#];
    assert!(has_sample(&text, "gan_train_loss", &[&ids[..], &[r#"term="G""#]].concat(), "0.7"), "{text}");
    let g = [&ids[..], &[r#"network="G""#]].concat();
    assert!(has_sample(&text, "gan_spectral_norm_max", &g, "12.5"), "{text}");
    // No spectral norm in D here: no series for it, rather than a 0.
    let d_series = |l: &&str| l.starts_with("gan_spectral_norm_max{") && l.contains(r#"network="D""#);
    assert!(!text.lines().any(|l| d_series(&l)), "{text}");
    assert!(m.sample_diversity_ratio.is_none(), "only rank 0 draws sample grids");
    assert!(has_sample(&text, "gan_train_images_total", &ids, "16"), "{text}");
    assert!(has_sample(
        &text,
        "gan_train_step_part_duration_seconds_count",
        &[&ids[..], &[r#"part="allreduce""#]].concat(),
        "1"
    ));
    assert!(m.checkpoint.is_none(), "only rank 0 writes checkpoints");
    for name in m.names() {
        assert!(name.starts_with("gan_") && !name.contains("_ms") && !name.ends_with("_count"), "{name}");
    }
    assert!(RankMetrics::new("exp", 0, 0, &[]).checkpoint.is_some());
}

#[test]
fn the_server_answers_metrics_and_404_and_stops_when_dropped() {
    let registry = prometheus::Registry::new();
    let gauge = prometheus::Gauge::new("gan_test_value", "A test value.").unwrap();
    registry.register(Box::new(gauge.clone())).unwrap();
    gauge.set(42.0);
    let server = MetricsServer::start("127.0.0.1", 0, Arc::new(move || render(&registry))).unwrap();
    let addr = server.local_addr();
    let ok = get(addr, "/metrics");
    assert!(
        ok.starts_with("HTTP/1.1 200") && ok.contains("version=0.0.4") && ok.contains("gan_test_value 42"),
        "{ok}"
    );
    assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
    drop(server);
    assert!(std::net::TcpStream::connect(addr).is_err(), "the port is closed after drop");
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = MetricsServer::start("127.0.0.1", port, Arc::new(String::new)).err().unwrap();
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")) && err.to_string().contains("metrics.port"),
        "{err}"
    );
}

#[test]
fn launcher_state_is_one_hot() {
    let m = LauncherMetrics::new("exp", 0, &[]);
    m.set_state(JobState::Running);
    let text = render(&m.registry);
    assert!(
        has_sample(&text, "gan_launcher_job_state", &[r#"run="exp""#, r#"state="running""#], "1"),
        "{text}"
    );
    assert!(
        has_sample(&text, "gan_launcher_job_state", &[r#"run="exp""#, r#"state="starting""#], "0"),
        "{text}"
    );
}

#[test]
fn pushes_need_an_http_url_and_a_reachable_gateway() {
    let err = push_to_gateway("https://x:9091", "r", "").unwrap_err();
    assert!(err.to_string().contains("only http://"), "{err}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let err = push_to_gateway(&format!("http://{closed}"), "r", "").unwrap_err();
    assert!(err.to_string().contains(&closed.to_string()), "{err}");
    let body = FinalResults { step: 8, cur_nimg: 256, duration_seconds: 1.5, completed: true }.render();
    assert!(
        body.contains("# TYPE gan_run_final_step gauge\ngan_run_final_step 8\n")
            && body.contains("gan_run_completed 1")
    );
}
