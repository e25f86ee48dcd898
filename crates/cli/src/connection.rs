//! Connection settings shared by every command, and the client context they all use.

use std::sync::Mutex;

use anyhow::bail;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;

/// Default broker address, Kafka's usual port on loopback.
pub(crate) const BOOTSTRAP_SERVER_DEFAULT: &str = "127.0.0.1:9092";

/// Where to connect, and librdkafka properties passed through as they are.
///
/// Used by produce, consume and bench, where `--config` means a client property.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Broker(s) to bootstrap from, `host:port[,host:port...]`.
    #[arg(
        short = 'b',
        long = "bootstrap-server",
        env = "STROM_BOOTSTRAP_SERVER",
        default_value = BOOTSTRAP_SERVER_DEFAULT
    )]
    pub bootstrap_server: String,
    /// librdkafka client property `key=value`, repeatable; applied last, so it wins.
    #[arg(short = 'X', long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
}

/// Like [`ConnectionArgs`], for `strom topic`, where `--config` names a topic property.
///
/// The client property flag is therefore `--command-config` (the name Kafka's own tools use),
/// short `-X` as everywhere else.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminConnectionArgs {
    /// Broker(s) to bootstrap from, `host:port[,host:port...]`.
    #[arg(
        short = 'b',
        long = "bootstrap-server",
        env = "STROM_BOOTSTRAP_SERVER",
        default_value = BOOTSTRAP_SERVER_DEFAULT,
        global = true
    )]
    pub bootstrap_server: String,
    /// librdkafka client property `key=value`, repeatable.
    #[arg(
        short = 'X',
        long = "command-config",
        value_name = "KEY=VALUE",
        value_parser = parse_key_value,
        global = true
    )]
    pub client_config: Vec<(String, String)>,
}

impl From<&AdminConnectionArgs> for ConnectionArgs {
    fn from(args: &AdminConnectionArgs) -> Self {
        ConnectionArgs {
            bootstrap_server: args.bootstrap_server.clone(),
            config: args.client_config.clone(),
        }
    }
}

impl ConnectionArgs {
    /// Builds a client config: `defaults` first, then the user's `--config`, which wins.
    pub(crate) fn client_config(&self, defaults: &[(&str, String)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        let _ = config.set("bootstrap.servers", &self.bootstrap_server);
        for (key, value) in defaults {
            let _ = config.set(*key, value);
        }
        for (key, value) in &self.config {
            let _ = config.set(key, value);
        }
        config
    }
}

/// Parses `key=value`, splitting at the first `=`; the value may be empty, the key may not.
pub(crate) fn parse_key_value(text: &str) -> anyhow::Result<(String, String)> {
    let Some((key, value)) = text.split_once('=') else {
        bail!("expected KEY=VALUE, got `{text}`");
    };
    if key.is_empty() {
        bail!("empty key in `{text}`");
    }
    Ok((key.to_string(), value.to_string()))
}

/// Client context that prints librdkafka's global errors (broker down, authentication...) to
/// stderr, once per distinct message, so a command waiting on an unreachable broker says why.
#[derive(Debug, Default)]
pub(crate) struct StderrContext {
    last_error: Mutex<String>,
}

impl ClientContext for StderrContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let line = format!("{error}: {reason}");
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if *last != line {
            eprintln!("warning: {line}");
            *last = line;
        }
    }

    /// librdkafka's log lines are dropped: they mostly repeat the errors printed above.
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, _fac: &str, _log_message: &str) {}
}

impl ConsumerContext for StderrContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_splits_at_first_equals() {
        assert_eq!(
            parse_key_value("sasl.jaas=a=b").unwrap(),
            ("sasl.jaas".to_string(), "a=b".to_string())
        );
        assert_eq!(parse_key_value("k=").unwrap(), ("k".to_string(), String::new()));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=v").is_err());
    }

    #[test]
    fn user_config_overrides_defaults() {
        let args = ConnectionArgs {
            bootstrap_server: "h:1".to_string(),
            config: vec![("linger.ms".to_string(), "0".to_string())],
        };
        let config = args.client_config(&[("linger.ms", "5".to_string())]);
        assert_eq!(config.get("linger.ms"), Some("0"));
        assert_eq!(config.get("bootstrap.servers"), Some("h:1"));
    }
}
