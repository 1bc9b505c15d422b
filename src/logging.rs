//! The server log, in Redis's line format: `pid:M 29 Nov 2026 01:23:45.678 * message`, with
//! `loglevel` filtering (`.` debug, `-` verbose, `*` notice, `#` warning), `logfile` (append; empty
//! means standard error, where shardis has always logged and tools read its start-up line) and
//! `syslog-enabled` / `syslog-ident` / `syslog-facility`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// (Nothing logs at debug level yet.)
    #[allow(dead_code)]
    Debug = 0,
    Verbose = 1,
    Notice = 2,
    Warning = 3,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Notice as u8);
static SYSLOG: AtomicBool = AtomicBool::new(false);
/// The role letter after the pid (`M` master, `X` sentinel), as Redis writes it.
static ROLE: AtomicU8 = AtomicU8::new(b'M');

/// Sets the role letter of every later line.
pub fn set_role(letter: u8) {
    ROLE.store(letter, Ordering::Relaxed);
}
static FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);

fn level_of(name: &str) -> u8 {
    match name {
        "debug" => 0,
        "verbose" => 1,
        "notice" => 2,
        "warning" => 3,
        // "nothing"
        _ => 4,
    }
}

/// Applies `loglevel` (CONFIG SET may change it at any time).
pub fn set_level(name: &str) {
    LEVEL.store(level_of(name), Ordering::Relaxed);
}

/// Applies the configuration at start-up: level, file, syslog.
pub fn init(cfg: &crate::config::Config) -> anyhow::Result<()> {
    set_level(&cfg.get("loglevel"));
    let path = cfg.get("logfile");
    if !path.is_empty() {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("Can't open the log file {path}: {e}"))?;
        if let Ok(mut g) = FILE.lock() {
            *g = Some(f);
        }
    }
    if cfg.get("syslog-enabled") == "yes" {
        let facility = match cfg.get("syslog-facility").as_str() {
            "local0" => libc::LOG_LOCAL0,
            "local1" => libc::LOG_LOCAL1,
            "local2" => libc::LOG_LOCAL2,
            "local3" => libc::LOG_LOCAL3,
            "local4" => libc::LOG_LOCAL4,
            "local5" => libc::LOG_LOCAL5,
            "local6" => libc::LOG_LOCAL6,
            "local7" => libc::LOG_LOCAL7,
            _ => libc::LOG_USER,
        };
        // openlog keeps the pointer: the identity must live for the whole process.
        let ident: &'static std::ffi::CStr = Box::leak(
            std::ffi::CString::new(cfg.get("syslog-ident"))
                .unwrap_or_default()
                .into_boxed_c_str(),
        );
        // SAFETY: `ident` is a NUL-terminated string that is never freed.
        unsafe { libc::openlog(ident.as_ptr(), libc::LOG_PID | libc::LOG_NDELAY, facility) };
        SYSLOG.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// Sends the log to `path` (append), for modes that have no `Config` (sentinel).
pub fn set_file(path: &str) -> anyhow::Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("Can't open the log file {path}: {e}"))?;
    if let Ok(mut g) = FILE.lock() {
        *g = Some(f);
    }
    Ok(())
}

/// `29 Nov 2026 01:23:45.678`, local time, as Redis stamps its lines.
fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as libc::time_t;
    // SAFETY: localtime_r fills the struct we own; strftime writes at most buf.len() bytes.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&secs, &mut tm);
        let mut buf = [0u8; 64];
        let n = libc::strftime(
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            c"%d %b %Y %H:%M:%S".as_ptr(),
            &tm,
        );
        format!(
            "{}.{:03}",
            String::from_utf8_lossy(&buf[..n]),
            now.subsec_millis()
        )
    }
}

/// Writes one line if `level` passes `loglevel`.
pub fn write(level: Level, msg: &str) {
    if (level as u8) < LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let mark = match level {
        Level::Debug => '.',
        Level::Verbose => '-',
        Level::Notice => '*',
        Level::Warning => '#',
    };
    let role = ROLE.load(Ordering::Relaxed) as char;
    let line = format!(
        "{}:{role} {} {mark} {msg}\n",
        std::process::id(),
        timestamp()
    );
    let wrote = FILE
        .lock()
        .ok()
        .and_then(|mut g| g.as_mut().map(|f| f.write_all(line.as_bytes())))
        .is_some();
    if !wrote {
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    if SYSLOG.load(Ordering::Relaxed) {
        let prio = match level {
            Level::Debug => libc::LOG_DEBUG,
            Level::Verbose => libc::LOG_INFO,
            Level::Notice => libc::LOG_NOTICE,
            Level::Warning => libc::LOG_WARNING,
        };
        if let Ok(c) = std::ffi::CString::new(msg.replace('\0', " ")) {
            // SAFETY: a constant "%s" format with one NUL-terminated string argument.
            unsafe { libc::syslog(prio, c"%s".as_ptr(), c.as_ptr()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_filter_and_lines_read_as_redis() {
        assert!(level_of("warning") > level_of("notice"));
        assert_eq!(level_of("nothing"), 4);
        let t = timestamp();
        // `29 Nov 2026 01:23:45.678`
        let parts: Vec<&str> = t.split(' ').collect();
        assert_eq!(parts.len(), 4, "{t}");
        assert_eq!(parts[3].len(), 12, "{t}");
    }
}
