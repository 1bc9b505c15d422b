//! The Prometheus endpoint (`metrics-port`): what INFO shows, in Prometheus's text format.
//!
//! A plain thread serves `GET /metrics` over HTTP/1.1. For each scrape it asks the server
//! itself for `INFO everything` over a loopback connection (authenticating with `requirepass`
//! when one is set), so the numbers are exactly INFO's, summed over shards the way INFO sums
//! them, and the shards' event loops never see a foreign request format. Every numeric INFO
//! field becomes a gauge `shardis_<field>`; the per-command, per-error, per-database and
//! per-shard lines become labelled series (`shardis_cmdstat_calls{cmd="get"}`,
//! `shardis_shard_keys{shard="0"}`, …).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Starts the endpoint on `bind:port` (port 0: off).
pub fn start(config: Arc<crate::config::Config>, server_port: u16) -> anyhow::Result<()> {
    let port = config.get_i64("metrics-port");
    if port <= 0 {
        return Ok(());
    }
    let bind = config
        .get("bind")
        .split_whitespace()
        .next()
        .unwrap_or("127.0.0.1")
        .trim_start_matches('-')
        .to_string();
    let listener = TcpListener::bind((bind.as_str(), port as u16))
        .map_err(|e| anyhow::anyhow!("metrics endpoint on {bind}:{port}: {e}"))?;
    crate::log!("Prometheus metrics on http://{bind}:{port}/metrics");
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let mut source: Option<TcpStream> = None;
            for stream in listener.incoming().flatten() {
                let _ = serve(stream, &config, server_port, &mut source);
            }
        })?;
    Ok(())
}

fn serve(
    mut stream: TcpStream,
    config: &crate::config::Config,
    server_port: u16,
    source: &mut Option<TcpStream>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Skip the headers.
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("");
    if !request.starts_with("GET ") || !(path == "/metrics" || path == "/") {
        return stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n",
        );
    }
    let info = match fetch_info(config, server_port, source) {
        Ok(i) => i,
        Err(e) => {
            *source = None;
            let body = format!("INFO failed: {e}\n");
            return stream.write_all(
                format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    };
    let body = render(&info);
    stream.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )?;
    stream.write_all(body.as_bytes())
}

fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Reads one reply: a bulk or verbatim string's text, or the error/status line.
fn read_reply(r: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let bad = || std::io::Error::other(format!("unexpected reply {line:?}"));
    match line.as_bytes().first() {
        Some(b'$') | Some(b'=') => {
            let n: usize = line[1..].trim().parse().map_err(|_| bad())?;
            let mut buf = vec![0u8; n + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(n);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        Some(b'+') => Ok(line.trim_end().to_string()),
        _ => Err(bad()),
    }
}

fn fetch_info(
    config: &crate::config::Config,
    port: u16,
    source: &mut Option<TcpStream>,
) -> std::io::Result<String> {
    if source.is_none() {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let pass = config.get("requirepass");
        if !pass.is_empty() {
            (&s).write_all(&command(&["AUTH", &pass]))?;
            read_reply(&mut BufReader::new(s.try_clone()?))?;
        }
        *source = Some(s);
    }
    let s = source
        .as_ref()
        .ok_or_else(|| std::io::Error::other("no connection"))?;
    (&*s).write_all(&command(&["INFO", "everything"]))?;
    let mut r = BufReader::new(s.try_clone()?);
    let text = read_reply(&mut r)?;
    // A verbatim string (RESP3) starts with its format.
    Ok(text.strip_prefix("txt:").unwrap_or(&text).to_string())
}

/// Metric names allow [a-zA-Z0-9_:].
fn metric_name(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Lines whose name carries a label: (prefix, label name).
const LABELLED: &[(&str, &str, &str)] = &[
    ("cmdstat_", "cmdstat", "cmd"),
    ("errorstat_", "errorstat", "error"),
    (
        "latency_percentiles_usec_",
        "latency_percentiles_usec",
        "cmd",
    ),
    ("db", "db", "db"),
    ("shard", "shard", "shard"),
];

/// INFO text in Prometheus's format.
pub fn render(info: &str) -> String {
    let mut out = String::new();
    let mut typed = std::collections::HashSet::new();
    let mut emit = |out: &mut String, name: &str, labels: &str, value: &str| {
        if typed.insert(name.to_string()) {
            out.push_str(&format!("# TYPE {name} gauge\n"));
        }
        out.push_str(&format!("{name}{labels} {value}\n"));
    };
    for line in info.lines() {
        let Some((key, value)) = line.trim_end().split_once(':') else {
            continue;
        };
        if key.starts_with('#') {
            continue;
        }
        let labelled = LABELLED.iter().find(|(p, _, _)| {
            key.strip_prefix(p).is_some_and(|rest| {
                !rest.is_empty()
                    && (*p != "db" && *p != "shard" || rest.bytes().all(|b| b.is_ascii_digit()))
            }) && value.contains('=')
        });
        match labelled {
            Some((prefix, family, label)) => {
                let which = &key[prefix.len()..];
                for pair in value.split(',') {
                    let Some((field, v)) = pair.split_once('=') else {
                        continue;
                    };
                    if v.parse::<f64>().is_err() {
                        continue;
                    }
                    let name = format!("shardis_{family}_{}", metric_name(field));
                    let labels = format!("{{{label}=\"{}\"}}", label_value(which));
                    emit(&mut out, &name, &labels, v);
                }
            }
            None => {
                if value.parse::<f64>().is_ok() {
                    emit(
                        &mut out,
                        &format!("shardis_{}", metric_name(key)),
                        "",
                        value,
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_becomes_prometheus_text() {
        let info = "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:5\r\n\r\n# Commandstats\r\ncmdstat_config|get:calls=2,usec=10,usec_per_call=5.00\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\n# Shards\r\nshard1:keys=2,commands=4\r\n# Latencystats\r\nlatency_percentiles_usec_get:p50=1.003,p99=2.007,p99.9=2.007\r\n";
        let m = render(info);
        assert!(
            m.contains("# TYPE shardis_uptime_in_seconds gauge\nshardis_uptime_in_seconds 5\n"),
            "{m}"
        );
        assert!(!m.contains("redis_version"), "{m}");
        assert!(
            m.contains("shardis_cmdstat_calls{cmd=\"config|get\"} 2\n"),
            "{m}"
        );
        assert!(m.contains("shardis_db_keys{db=\"0\"} 3\n"), "{m}");
        assert!(m.contains("shardis_shard_commands{shard=\"1\"} 4\n"), "{m}");
        assert!(
            m.contains("shardis_latency_percentiles_usec_p99_9{cmd=\"get\"} 2.007\n"),
            "{m}"
        );
    }
}
