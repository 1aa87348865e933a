//! What the benches read of their own process (memory, CPU) and how they summarise
//! latencies; each bench uses some of it.
#![allow(dead_code)]

use std::time::Duration;

/// A `/proc/self/status` figure in MiB (`VmRSS:`, `VmHWM:` for the peak).
pub fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time of the whole process (user and system) so far, in seconds. On a shared
/// machine CPU per unit of work varies far less between runs than throughput does.
pub fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

/// CPU time (user and system, seconds) of this process's threads whose name starts with
/// `prefix`: what the bench's own clients cost, to tell the server's share from the
/// whole process's.
pub fn threads_cpu_secs(prefix: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|s| {
            let (head, rest) = s.rsplit_once(')')?;
            let name = head.split_once('(')?.1;
            if !name.starts_with(prefix) {
                return None;
            }
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .sum()
}

/// CPU time (user and system, seconds) of every PostgreSQL server process on the machine
/// (the benches' database, on this machine): what the database costs per transition.
pub fn postgres_cpu_secs() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter(|p| {
            p.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|p| std::fs::read_to_string(p.path().join("stat")).ok())
        .filter_map(|s| {
            let (head, rest) = s.rsplit_once(')')?;
            if head.split_once('(')?.1 != "postgres" {
                return None;
            }
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .sum()
}

/// The `p` quantile of `v` (sorts it); zero when empty.
pub fn q(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}
