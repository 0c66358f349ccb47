//! Registering metrics into one registry while recording their names, so the set of exported
//! names is known without a scrape (histogram and vector families without samples yet do not
//! appear in a scrape).
use std::collections::HashMap;

use prometheus::{Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, Opts, Registry};

pub(crate) struct Builder {
    pub registry: Registry,
    pub names: Vec<String>,
}

/// Definitions are static and valid; a failure here is a bug in this module.
const VALID: &str = "static metric definitions are valid and registered once";

impl Builder {
    pub fn new(const_labels: HashMap<String, String>) -> Self {
        Builder { registry: Registry::new_custom(None, Some(const_labels)).expect(VALID), names: Vec::new() }
    }

    fn register<C: prometheus::core::Collector + Clone + 'static>(&mut self, name: &str, c: C) -> C {
        self.registry.register(Box::new(c.clone())).expect(VALID);
        self.names.push(name.to_string());
        c
    }

    pub fn gauge(&mut self, name: &str, help: &str) -> Gauge {
        self.register(name, Gauge::with_opts(Opts::new(name, help)).expect(VALID))
    }

    pub fn gauge_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        self.register(name, GaugeVec::new(Opts::new(name, help), labels).expect(VALID))
    }

    /// An `_info` gauge of value 1 whose labels carry `build` (version, commit, ...).
    pub fn info(&mut self, name: &str, help: &str, build: &[(&str, &str)]) {
        let names: Vec<&str> = build.iter().map(|(k, _)| *k).collect();
        let values: Vec<&str> = build.iter().map(|(_, v)| *v).collect();
        self.gauge_vec(name, help, &names).with_label_values(&values).set(1.0);
    }

    pub fn counter(&mut self, name: &str, help: &str) -> IntCounter {
        debug_assert!(name.ends_with("_total"));
        self.register(name, IntCounter::with_opts(Opts::new(name, help)).expect(VALID))
    }

    pub fn histogram(&mut self, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
        self.register(
            name,
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect(VALID),
        )
    }

    pub fn histogram_vec(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Vec<f64>,
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets);
        self.register(name, HistogramVec::new(opts, labels).expect(VALID))
    }
}

/// `start`, `start * factor`, ... (`count` bounds).
pub fn exponential(start: f64, factor: f64, count: usize) -> Vec<f64> {
    prometheus::exponential_buckets(start, factor, count).expect(VALID)
}

pub fn labels(pairs: &[(&str, String)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}
