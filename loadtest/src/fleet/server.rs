//! The servers a scenario runs against: Torpor (already running, started by
//! the user, reached through `--url` and `--admin`) and the two baselines,
//! which loadtest starts itself as `loadtest baseline-server` child processes
//! and stops by pid when done, on failure too (the guard's `Drop`).
//!
//! Also where processes get pinned to CPUs (`taskset -c`), so that the server
//! and the load generator do not share a core and CPU-seconds mean something.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use crate::measure::cpu::{Role, Watch};
use crate::measure::{node, rss};
use crate::report::model::{Host, TargetKind};
use crate::wire::admin;
use crate::wire::client::Target;

/// How long a baseline may take to print its ready line.
const BASELINE_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a baseline gets to exit after SIGTERM before SIGKILL.
const BASELINE_EXIT_GRACE: Duration = Duration::from_secs(5);
/// One process may hold 20000 descriptors on the machines this runs on; a
/// baseline is one process, so this is as many connections as it can take.
pub const BASELINE_MAX_CONNECTIONS: u64 = 19_000;

/// The machine a run is on, as the report records it.
pub fn this_host(server_cpus: Option<String>, client_cpus: Option<String>) -> Host {
    Host {
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        clock_ticks_per_second: crate::measure::cpu::clock_ticks_per_second(),
        taskset: have_taskset(),
        server_cpus,
        client_cpus,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

/// Where processes run: `taskset -c` lists, `None` for wherever.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    pub server_cpus: Option<String>,
    pub client_cpus: Option<String>,
    /// `--threads` for the baselines' tokio runtime (its own default if unset).
    pub baseline_threads: Option<usize>,
}

/// Whether `taskset` can be run here (checked once).
pub fn have_taskset() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    *HAVE.get_or_init(|| {
        Command::new("taskset")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A command for `program`, under `taskset -c CPUS` when pinning is asked for
/// and possible. `taskset` execs the program, so the child's pid is the
/// program's.
pub fn pinned_command(program: &std::path::Path, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) if have_taskset() => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpus).arg(program);
            command
        }
        _ => Command::new(program),
    }
}

/// A baseline server child. Dropping it ends the process.
pub struct BaselineProcess {
    child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
}

impl BaselineProcess {
    pub fn start(kind: TargetKind, placement: &Placement) -> Result<BaselineProcess, String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
        let mut command = pinned_command(&exe, placement.server_cpus.as_deref());
        command
            .arg("baseline-server")
            .arg("--listen")
            // Port 0: the kernel picks a free one and the ready line says which.
            .arg("127.0.0.1:0")
            .arg("--mode")
            .arg(kind.name());
        if let Some(threads) = placement.baseline_threads {
            command.arg("--threads").arg(threads.to_string());
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start baseline-server --mode {}: {e}", kind.name()))?;
        let stdout = child.stdout.take();
        // From here on, an early return drops the guard, which kills the child.
        let mut guard = BaselineProcess {
            pid: child.id(),
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let stdout = stdout.ok_or("baseline-server has no stdout pipe")?;
        let (tx, lines) = mpsc::channel();
        // Reads the ready line, then keeps draining so that the server never
        // blocks on a full pipe; ends with the process.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more; keep reading to drain.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + BASELINE_READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some((addr, pid)) = parse_ready(&line) {
                        guard.addr = addr;
                        if pid != guard.pid {
                            return Err(format!(
                                "baseline-server says pid {pid}, but its process is {}",
                                guard.pid
                            ));
                        }
                        return Ok(guard);
                    }
                    eprintln!("baseline-server: {line}");
                }
                Err(_) => {
                    let status = guard.child.try_wait().ok().flatten();
                    return Err(match status {
                        Some(status) => format!("baseline-server exited before ready ({status})"),
                        None => format!(
                            "baseline-server not ready within {} s",
                            BASELINE_READY_TIMEOUT.as_secs()
                        ),
                    });
                }
            }
        }
    }

    /// `Some(status)` if the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }
}

impl Drop for BaselineProcess {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        // SIGTERM first, by pid: the server closes its sockets and exits.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + BASELINE_EXIT_GRACE;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `pid` runs, as `ps` would show it, so a report says which external
/// server it measured.
fn command_line(pid: u32) -> String {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(raw) if !raw.is_empty() => String::from_utf8_lossy(&raw)
            .trim_end_matches('\0')
            .replace('\0', " "),
        _ => format!("external server pid {pid}"),
    }
}

/// `baseline ready addr=127.0.0.1:4711 pid=99 mode=tuned` → address and pid.
pub fn parse_ready(line: &str) -> Option<(SocketAddr, u32)> {
    let rest = line.strip_prefix("baseline ready ")?;
    let mut addr = None;
    let mut pid = None;
    for word in rest.split_whitespace() {
        if let Some(v) = word.strip_prefix("addr=") {
            addr = v.parse().ok();
        } else if let Some(v) = word.strip_prefix("pid=") {
            pid = v.parse().ok();
        }
    }
    Some((addr?, pid?))
}

/// A server that someone else started and loadtest cannot ask anything:
/// reached at `url`, measured as the process `pid` and all its descendants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    pub url: String,
    pub pid: u32,
}

/// One server under test, with how to measure it.
pub struct Server {
    pub kind: TargetKind,
    pub url: String,
    /// Torpor's admin API; `None` for a baseline or an external server.
    pub admin: Option<SocketAddr>,
    process: Option<BaselineProcess>,
    /// The root of an external server's process tree.
    external_pid: Option<u32>,
}

impl Server {
    /// Torpor as the user runs it, a freshly started baseline, or the
    /// external server as the user runs it.
    pub fn start(
        kind: TargetKind,
        torpor_url: &str,
        torpor_admin: &str,
        external: Option<&External>,
        placement: &Placement,
    ) -> Result<Server, String> {
        if kind == TargetKind::External {
            let external =
                external.ok_or("--target external needs --external-url and --external-pid")?;
            Target::parse(&external.url)?;
            // Fails early if the pid is wrong, rather than measuring nothing.
            rss::rss_bytes(external.pid)
                .map_err(|e| format!("--external-pid {}: {e}", external.pid))?;
            return Ok(Server {
                kind,
                url: external.url.clone(),
                admin: None,
                process: None,
                external_pid: Some(external.pid),
            });
        }
        if kind == TargetKind::Torpor {
            let admin = admin::parse_addr(torpor_admin)?;
            // Fails early, with the admin's own words, if Torpor is not up.
            admin::node(admin)?;
            // A bad url fails here, once, not in every client process.
            Target::parse(torpor_url)?;
            return Ok(Server {
                kind,
                url: torpor_url.to_string(),
                admin: Some(admin),
                process: None,
                external_pid: None,
            });
        }
        let process = BaselineProcess::start(kind, placement)?;
        let url = format!("ws://{}", process.addr);
        Ok(Server {
            kind,
            url,
            admin: None,
            process: Some(process),
            external_pid: None,
        })
    }

    /// What a CPU meter should watch for this server.
    pub fn watch(&self) -> Watch {
        if let Some(pid) = self.external_pid {
            return Watch::Tree(pid);
        }
        match (&self.admin, &self.process) {
            (Some(admin), _) => Watch::Torpor(*admin),
            (None, Some(p)) => Watch::Pids(vec![(Role::Server, p.pid)]),
            (None, None) => Watch::Pids(Vec::new()),
        }
    }

    /// The processes that hold the connections: Torpor's edges, the
    /// baseline, or an external server's whole tree as it is now (it has no
    /// way to say which of its processes hold them). (Torpor's whole node,
    /// workers included, is [`measure::node`](crate::measure::node)'s to
    /// list.)
    pub fn memory_pids(&self) -> Result<Vec<u32>, String> {
        if let Some(pid) = self.external_pid {
            return Ok(node::tree(pid));
        }
        match (&self.admin, &self.process) {
            (Some(admin), _) => Ok(admin::node(*admin)?.edge_pids()),
            (None, Some(p)) => Ok(vec![p.pid]),
            (None, None) => Ok(Vec::new()),
        }
    }

    /// RSS summed over [`Server::memory_pids`].
    pub fn rss_bytes(&self, pids: &[u32]) -> Result<u64, String> {
        pids.iter().map(|pid| rss::rss_bytes(*pid)).sum()
    }

    /// An error if a baseline has died (Torpor is not ours to check).
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.process.as_mut().and_then(BaselineProcess::exited) {
            Some(status) => Err(format!(
                "the {} baseline server exited ({status})",
                self.kind.name()
            )),
            None => Ok(()),
        }
    }

    /// What to call the server's processes in the report.
    pub fn describe(&self) -> String {
        if let Some(pid) = self.external_pid {
            return format!("{} (pid {pid} and its descendants)", command_line(pid));
        }
        match &self.process {
            Some(p) => format!(
                "baseline-server --mode {} (pid {})",
                self.kind.name(),
                p.pid
            ),
            None => "torpor (supervisor, edges and workers from /admin/node)".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_gives_address_and_pid() {
        assert_eq!(
            parse_ready("baseline ready addr=127.0.0.1:4711 pid=99 mode=tuned"),
            Some(("127.0.0.1:4711".parse().unwrap(), 99))
        );
        assert_eq!(parse_ready("baseline ready addr=127.0.0.1:1"), None);
        assert_eq!(parse_ready("listening on 127.0.0.1:1"), None);
    }

    #[test]
    fn pinned_commands_go_through_taskset_when_asked() {
        let program = std::path::Path::new("/bin/true");
        let plain = pinned_command(program, None);
        assert_eq!(plain.get_program(), "/bin/true");
        let pinned = pinned_command(program, Some("1"));
        if have_taskset() {
            assert_eq!(pinned.get_program(), "taskset");
            let args: Vec<_> = pinned.get_args().collect();
            assert_eq!(args, ["-c", "1", "/bin/true"]);
        } else {
            assert_eq!(pinned.get_program(), "/bin/true");
        }
    }
}
