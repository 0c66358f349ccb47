//! Logging for every process of a run. Each line names its process (`launcher` on node k, or rank r
//! with its local rank and node), so interleaved output from many ranks stays readable and
//! greppable. Text is for people; JSON (one object per line) is for log shippers.
use std::fmt;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Who is logging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Launcher {
        node_rank: u32,
    },
    Rank {
        rank: u32,
        local_rank: u32,
        node_rank: u32,
    },
    /// A command-line tool (plan, ...), not part of a running job.
    Tool,
}

impl Role {
    fn prefix(&self) -> String {
        match self {
            Role::Launcher { node_rank } => format!("launcher node={node_rank}"),
            Role::Rank { rank, .. } => format!("rank={rank}"),
            Role::Tool => "gan-launch".into(),
        }
    }

    fn json_fields(&self, out: &mut Map<String, Value>) {
        match *self {
            Role::Launcher { node_rank } => {
                out.insert("role".into(), "launcher".into());
                out.insert("node".into(), node_rank.into());
            }
            Role::Rank { rank, local_rank, node_rank } => {
                out.insert("role".into(), "rank".into());
                out.insert("rank".into(), rank.into());
                out.insert("local_rank".into(), local_rank.into());
                out.insert("node".into(), node_rank.into());
            }
            Role::Tool => {
                out.insert("role".into(), "tool".into());
            }
        }
    }
}

static ROLE: OnceLock<Role> = OnceLock::new();

/// Installs the global subscriber. `RUST_LOG` (if set) overrides `level`, so one module can be
/// turned up without touching the config.
pub fn init(role: Role, format: LogFormat, level: &str) {
    let _ = ROLE.set(role);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second init (tests, or a tool calling into the library) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.event_format(TextFormat).try_init(),
        LogFormat::Json => builder.event_format(JsonFormat).try_init(),
    };
}

fn role() -> &'static Role {
    ROLE.get().unwrap_or(&Role::Tool)
}

fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

struct TextFormat;

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        write!(writer, "{} {:>5} [{}] ", timestamp(), meta.level(), role().prefix())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

struct JsonFormat;

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut object = Map::new();
        object.insert("ts".into(), timestamp().into());
        object.insert("level".into(), meta.level().as_str().into());
        object.insert("target".into(), meta.target().into());
        role().json_fields(&mut object);
        event.record(&mut JsonVisitor(&mut object));
        writeln!(writer, "{}", Value::Object(object))
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(
            field.name().into(),
            serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number),
        );
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
}
