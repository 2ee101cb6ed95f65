//! `loadtest idle-client`: the child process behind `idle`, and behind the
//! silent room of `wake --room-sockets`. It opens its share of the
//! connections from its own source address, reports them on
//! stdout, then holds them without a single read or write until its stdin
//! closes (or a deadline passes, should the parent die).

use std::io::Read;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::child::open::{self, OpenPlan, SPARE_FDS};
use crate::wire::client::Target;

/// Where `loadtest idle` sends every connection: `/bench/idle-<room>`.
pub const ROOM_PREFIX: &str = "idle-";

/// `loadtest idle-client` flags: one child's share of the work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    pub url: String,
    /// Connection `k` opens `/bench/<room_prefix><k % rooms>`.
    pub room_prefix: String,
    pub rooms: u32,
    /// Global index of this child's first connection; connection `k` joins
    /// room `k % rooms`, so rooms fill evenly across children.
    pub first_index: u64,
    pub connections: u64,
    pub attach_bytes: usize,
    pub source_ip: std::net::Ipv4Addr,
    pub concurrency: usize,
    pub open_deadline: Duration,
    /// Holding ends by itself this long after `ready`.
    pub hold_deadline: Duration,
}

impl ClientOptions {
    /// The command-line flags the child is started with, which the command
    /// line parses back into these options.
    pub fn to_args(&self) -> Vec<String> {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        [
            ("--url", self.url.clone()),
            ("--room-prefix", self.room_prefix.clone()),
            ("--rooms", self.rooms.to_string()),
            ("--first-index", self.first_index.to_string()),
            ("--connections", self.connections.to_string()),
            ("--attach-bytes", self.attach_bytes.to_string()),
            ("--source-ip", self.source_ip.to_string()),
            ("--concurrency", self.concurrency.to_string()),
            ("--open-deadline", ms(self.open_deadline)),
            ("--hold-deadline", ms(self.hold_deadline)),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect()
    }
}

/// Runs one client process: opens its share, reports, holds, closes.
pub fn run_client(opts: &ClientOptions) -> Result<(), String> {
    let target = Target::parse(&opts.url)?;
    if opts.rooms == 0 || opts.concurrency == 0 {
        return Err("--rooms and --concurrency must be at least 1".into());
    }
    open::check_descriptors(opts.connections, opts.connections + SPARE_FDS)?;
    let attach: Option<Arc<[u8]>> = (opts.attach_bytes > 0).then(|| {
        let mut message = b"attach:".to_vec();
        message.resize(message.len() + opts.attach_bytes, b'a');
        message.into()
    });
    let plan = OpenPlan {
        room_prefix: opts.room_prefix.clone(),
        rooms: opts.rooms,
        first_index: opts.first_index,
        connections: opts.connections,
        attach,
        source_ip: opts.source_ip,
        concurrency: opts.concurrency,
        deadline: opts.open_deadline,
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    let started = Instant::now();
    let opened = runtime.block_on(open::open_all(Arc::new(target), &plan));
    let open_ms = started.elapsed().as_millis();
    // The sockets were taken out of the reactor; the runtime has nothing left to do.
    drop(runtime);
    opened
        .report(&mut std::io::stdout().lock(), open_ms)
        .map_err(|e| format!("cannot report to parent: {e}"))?;

    // Hold: nothing is read or written on the sockets. Stdin is read on a
    // thread so the wait below can have a deadline.
    let (tx, released) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        loop {
            match std::io::stdin().read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(());
    });
    if released.recv_timeout(opts.hold_deadline).is_err() {
        eprintln!(
            "client {}: parent did not release us within {} s; closing",
            opts.source_ip,
            opts.hold_deadline.as_secs()
        );
    }
    drop(opened.streams);
    Ok(())
}
