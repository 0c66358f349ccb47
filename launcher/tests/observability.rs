//! Metrics, dashboards and alerts against the real tools: a live 2-rank CPU run scraped by
//! Debian's Prometheus, every dashboard query answered with data, `promtool check metrics` on
//! every endpoint, `promtool check rules` / `test rules`, the dashboard type-checked against
//! Grafana's published schema, the final push to a real Pushgateway, and every metric name the
//! dashboards and rules use registered by the code.
mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use gan_core::metrics::{LauncherMetrics, RankMetrics};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn ensure_prometheus() {
    let status = Command::new(repo().join("scripts/ensure-prometheus.sh")).status().unwrap();
    assert!(status.success(), "scripts/ensure-prometheus.sh failed");
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every query of the dashboard: (panel title, expression).
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("dashboards/gan-training.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            out.push((
                panel["title"].as_str().unwrap().to_string(),
                target["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    for var in dash["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["query"]["query"].as_str() {
            out.push((format!("variable {}", var["name"]), q.to_string()));
        }
    }
    out
}

fn rule_expressions() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("alerts/gan-launch.rules.yml")).unwrap();
    text.lines().filter_map(|l| l.trim().strip_prefix("expr: ")).map(str::to_string).collect()
}

/// The `gan_*` metric names an expression uses, with histogram suffixes removed.
fn names_in(expr: &str, registered: &BTreeSet<String>) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("gan_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase() || bytes[end].is_ascii_digit() || bytes[end] == b'_')
        {
            end += 1;
        }
        let name = &expr[start..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| registered.contains(*b)))
            .unwrap_or(name);
        names.push(base.to_string());
        i = end;
    }
    names
}

fn registered_names() -> BTreeSet<String> {
    let rank = RankMetrics::new("r", 0, 0, &[("version", "v")]);
    let launcher = LauncherMetrics::new("r", 0, &[("version", "v")]);
    rank.names().iter().chain(launcher.names()).cloned().collect()
}

#[test]
fn every_metric_the_dashboards_and_rules_use_is_registered() {
    let registered = registered_names();
    let mut used = 0;
    for (title, expr) in dashboard_queries() {
        for name in names_in(&expr, &registered) {
            assert!(registered.contains(&name), "panel {title:?} uses {name}, which no code registers");
            used += 1;
        }
    }
    for expr in rule_expressions() {
        for name in names_in(&expr, &registered) {
            assert!(registered.contains(&name), "alert rule `{expr}` uses {name}, which no code registers");
            used += 1;
        }
    }
    assert!(used > 30, "the check saw {used} uses");
    assert!(names_in("rate(gan_nonexistent_total[5m])", &registered).iter().any(|n| !registered.contains(n)));
}

#[test]
fn promtool_checks_the_alert_rules_and_their_unit_tests() {
    ensure_prometheus();
    let alerts = repo().join("alerts");
    let check = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(alerts.join("gan-launch.rules.yml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}{}", stdout(&check), stderr(&check));
    let test = Command::new("promtool")
        .current_dir(&alerts)
        .args(["test", "rules", "gan-launch.rules.test.yml"])
        .output()
        .unwrap();
    assert!(test.status.success(), "{}{}", stdout(&test), stderr(&test));
}

#[test]
fn the_dashboard_matches_grafanas_schema_types() {
    let script = repo().join("scripts/check-dashboards.sh");
    let out = Command::new(&script).arg(repo().join("dashboards/gan-training.json")).output().unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // The check can fail: a misspelt panel key and a string where a number belongs.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("dashboards/gan-training.json")).unwrap();
    let broken = text.replacen("\"title\": \"Throughput\"", "\"titel\": \"Throughput\"", 1).replacen(
        "\"graphTooltip\": 1",
        "\"graphTooltip\": \"1\"",
        1,
    );
    let path = dir.path().join("broken.json");
    std::fs::write(&path, broken).unwrap();
    let out = Command::new(&script).arg(&path).output().unwrap();
    assert!(!out.status.success(), "a broken dashboard passed: {}", stdout(&out));
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn promtool_check_metrics(body: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", stdout(&out), stderr(&out)))
}

fn query(prom: &str, expr: &str) -> Vec<serde_json::Value> {
    let (status, body) = http_get(prom, &format!("/api/v1/query?query={}", percent_encode(expr)));
    assert_eq!(status, 200, "{expr}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Whether a dashboard query returns data. Grafana's `label_values(SELECTOR, LABEL)` (template
/// variables) is Grafana's, not PromQL: it has data when some series of SELECTOR carries LABEL.
fn has_data(prom: &str, expr: &str) -> bool {
    match expr
        .strip_prefix("label_values(")
        .and_then(|e| e.strip_suffix(')'))
        .and_then(|e| e.rsplit_once(", "))
    {
        Some((selector, label)) => query(prom, selector).iter().any(|s| s["metric"][label].is_string()),
        None => !query(prom, expr).is_empty(),
    }
}

/// The run evaluates in the background (seeded random Inception weights, since the standard ones
/// cannot be downloaded here), so the evaluation panels get data too.
#[test]
fn a_live_two_rank_run_scraped_by_prometheus_fills_every_panel() {
    gan_train_path();
    ensure_prometheus();
    let dir = tempfile::tempdir().unwrap();
    let weights = random_inception_weights(dir.path());
    let job = gan_launch()
        .env("HOME", dir.path())
        .arg(shipped_config("ci-tiny.yaml"))
        .args(["--gpus", "2", "--master-port", "0", "--set", &format!("run.dir={}", dir.path().display())])
        .args([
            "--set",
            "train.total_kimg=1000",
            "--set",
            "train.kimg_per_tick=0.064",
            "--set",
            "checkpoint.every_ticks=1",
        ])
        .args(["--set", "eval.every_kimg=0.128", "--set", "eval.metrics=[fid, pr, dc]"])
        .args(["--set", "eval.num=20", "--set", "eval.num_real=40", "--set", "eval.batch=10"])
        .args(["--set", &format!("eval.weights={}", weights.display())])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _job = Killed(job);
    let run_dir = dir.path().join("ci-tiny");
    let targets: Vec<String> =
        ["rank-0", "rank-1", "launcher-node-0"].iter().map(|n| endpoint(&run_dir, n)).collect();
    // Every endpoint passes promtool's lint once the first tick has set the tick series.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http_get(&targets[0], "/metrics").1.contains("gan_train_loss{") {
        assert!(Instant::now() < deadline, "no tick reached the metrics");
        std::thread::sleep(Duration::from_millis(200));
    }
    for target in &targets {
        let (status, body) = http_get(target, "/metrics");
        assert_eq!(status, 200);
        let (ok, report) = promtool_check_metrics(&body);
        assert!(ok, "promtool check metrics on {target}: {report}");
    }
    // A real Prometheus scraping the three endpoints every second.
    let port = free_port();
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let quoted: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    let config = format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
         scrape_configs:\n  - job_name: gan\n    static_configs:\n      - targets: [{}]\n",
        quoted.join(", ")
    );
    std::fs::write(prom_dir.join("prometheus.yml"), config).unwrap();
    let prom = Command::new("prometheus")
        .arg(format!("--config.file={}", prom_dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", prom_dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _prom = Killed(prom);
    let prom = format!("127.0.0.1:{port}");
    // Every panel's queries, variables substituted, must return data; the first scrape comes
    // about 6 s after start and rates need two samples, so poll.
    // The run is a DCGAN: the BigGAN-only series (spectral norms) have no data here; the BigGAN
    // recipes' test checks that they are recorded, the metrics unit test that they are exported.
    let pending: Vec<(String, String)> = dashboard_queries()
        .into_iter()
        .filter(|(_, e)| !e.contains("gan_spectral_norm_max"))
        .map(|(t, e)| (t, e.replace("$__rate_interval", "10s").replace("$run", ".*").replace("$rank", ".*")))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut empty = pending;
    while !empty.is_empty() {
        if Instant::now() > deadline {
            panic!("panels without data after 90 s: {empty:#?}");
        }
        std::thread::sleep(Duration::from_millis(500));
        if std::net::TcpStream::connect(&prom).is_err() {
            continue;
        }
        empty.retain(|(_, expr)| !has_data(&prom, expr));
    }
    // Labels identify run, rank and node.
    let steps = query(&prom, "gan_train_steps_total");
    let ranks: BTreeSet<&str> = steps.iter().map(|s| s["metric"]["rank"].as_str().unwrap()).collect();
    assert_eq!(ranks, BTreeSet::from(["0", "1"]));
    assert!(steps.iter().all(|s| s["metric"]["run"] == "ci-tiny" && s["metric"]["node"] == "0"));
}

#[test]
fn the_final_results_reach_a_real_pushgateway() {
    gan_train_path();
    ensure_prometheus();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let gateway = Command::new("prometheus-pushgateway")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--persistence.file={}", dir.path().join("push.db").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _gateway = Killed(gateway);
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "the pushgateway did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = gan_launch()
        .arg(shipped_config("ci-tiny.yaml"))
        .args(["--set", &format!("run.dir={}", dir.path().display())])
        .args(["--set", "train.total_kimg=0.128", "--set", &format!("metrics.pushgateway=http://{addr}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("pushed the final results"), "{}", stderr(&out));
    let (_, body) = http_get(&addr, "/metrics");
    let line =
        body.lines().find(|l| l.starts_with("gan_run_final_step{")).unwrap_or_else(|| panic!("{body}"));
    assert!(
        line.contains("job=\"gan_launch\"") && line.contains("run=\"ci-tiny\"") && line.ends_with(" 4"),
        "{line}"
    );
    assert!(body.lines().any(|l| l.starts_with("gan_run_completed{") && l.ends_with(" 1")), "{body}");
}
