//! The usage text: every command and flag, as `loadtest help` prints it, and
//! each command's own section for `loadtest <command> --help`.

pub const USAGE: &str = "\
usage: loadtest <scenario> [flags]

Scenarios run against a Torpor node that is already running (--url, --admin)
with `bench_routes = true` in its config (they speak the Bench protocol) and,
with --baselines, also against two baseline servers that loadtest starts
itself (`loadtest baseline-server --mode default|tuned`: tokio-tungstenite,
one task per connection, default config and a 4 KiB read buffer), so every
figure has the baselines' beside it from the same run. Results go to stdout
as a summary (p50, p90, p99, p99.9, max, throughput, server CPU-seconds per
million operations, Torpor/baseline ratios) and, with --json PATH, to PATH
and a self-contained HTML report beside it (PATH with .html).

Flags of every traffic scenario (idle, ping, echo, broadcast, churn):
  --url URL             Torpor's ws://host:port [ws://127.0.0.1:8787]
  --admin ADDR          Torpor's admin host:port [127.0.0.1:9090]
  --baselines           run against torpor, then the default and the tuned
                        baseline (the same as --target all)
  --target T            torpor, default, tuned, external, several joined by
                        commas (torpor,external), or all (torpor and both
                        baselines) [torpor]
  --external-url URL    with --target external: ws://host:port of a server
                        loadtest neither starts nor can ask (e.g. workerd
                        serving the same JavaScript app; see
                        loadtest/js-bench.sh)
  --external-pid PID    with --target external: that server's pid; its CPU
                        and RSS are those of PID and all its descendants
                        (re-listed at each reading)
  --processes N|auto    client processes, process i connecting from
                        127.0.0.(10+i); each holds under 19000 sockets (20000
                        fds per process) [auto: one per 15000 connections;
                        churn: 1]
  --concurrency N       connections being opened at once per process [256]
  --server-cpu CPUS     taskset -c list for the baseline servers, or none [0]
  --client-cpu CPUS     taskset -c list for the client processes, or none [1]
                        (pin Torpor yourself: taskset -c 0 torpor ...)
  --baseline-threads N  tokio worker threads of the baselines [their default, 1]
  --json PATH           write the report as JSON, and PATH.html beside it
A baseline is one process, so it gets at most 19000 connections (noted).
Server CPU is utime+stime from /proc: Torpor's supervisor, edges and workers
(from /admin/node, re-read every second), the baseline's one process, or
the external server's process tree. An external server has no admin API:
what loadtest reads there (ping's wake check, idle's wait for hibernation)
is left out for it.

loadtest idle [flags]
  Opens idle WebSockets to /bench/idle-<room>, holds them without a byte
  sent, and reports server RSS per connection (Torpor: all edges summed),
  kernel Slab and TCP buffer memory per connection (/proc/meminfo,
  /proc/net/sockstat), time to open them all, and RSS against connections
  (sampled every 5 %). When the hold ends it waits (at most 2 min; an
  external server cannot be asked, so give it a --hold longer than its
  hibernation timeout) for the run's objects to hibernate, then sums the RSS of every process of
  the node (supervisor, edges, workers and any other child of the
  supervisor; a baseline: its one process): the `node` line, and the
  whole node's growth per connection beside the edges' share of it at the
  same moments (memory.node in the JSON).
  --connections N       in total [15000]
  --rooms N             Bench objects to spread them over [100]
  --attach-bytes N      send attach:<N x 'a'> on each and await ok; 0 = none [0]
  --hold DURATION       hold after measuring, e.g. 10s, 500ms, 2m [10s]
  --open-timeout D      each client process gives up on connections not
                        open by then (the parent waits 1 min more) [240s]
  --probe-sockets N     during the hold, N more sockets send `ping` and time
                        each `pong` (phase held-ping; Torpor answers it at the
                        edge, waking nothing); 0 = no probe [8]
  --probe-rate R        pings per second over all probe sockets; 0 = none [100]

loadtest ping [flags]
  C connections over R rooms (/bench/ping-<room>) send `ping`; Torpor answers
  with the object's auto-response at the edge (no wake: the objects' wakes
  and events are read before and after, and must not move), a baseline with a
  plain `pong`. After a warm-up, phase `max`: a closed loop, --window pings
  outstanding per connection, for --duration (pings/s). Phase `half`: an
  open loop at half that rate (each target at half its own max), paced
  evenly over the connections, --window pings per write, for --duration
  (latency); with --rate, phase `rate` at that rate for every target instead.
  --connections N       [1000]
  --rooms N             [10]
  --duration DURATION   of each phase [10s]
  --warmup DURATION     unmeasured closed loop first; 0 for none [1s]
  --window N            requests outstanding per connection in `max`, and
                        per write in the open loop [1]
  --rate N              requests per second of the open loop [half of max]
  (--message-bytes does not apply: the message is `ping`.)

loadtest echo [flags]
  As ping, with `echo:<N x 'x'>` answered by the object (live after the
  warm-up) through its worker; rooms are /bench/echo-<room>.
  --connections, --rooms, --duration, --warmup, --window, --rate as ping
  --message-bytes N     echo payload [32]

loadtest broadcast [flags]
  One object (/bench/bcast-0) with all C sockets; one of them sends
  `bcast:<seq>:<padding>`, the object sends it to every socket, sender
  included. Phase `max`: at most --window messages not yet on every socket
  (acknowledged through the parent), for --duration: deliveries/s
  (sockets x messages / first send to last receipt). Phase `fanout`: one
  message at a time (or --rate messages/s): latency from send to the last
  socket's receipt, and to the first.
  --connections N       sockets of the object [1000]
  --duration DURATION   of each phase [10s]
  --window N            messages in flight in `max` [8]
  --rate N              messages per second in `fanout` [one at a time]
  --message-bytes N     payload (at least the sequence number) [32]
  (--rooms does not apply: one object.)

loadtest churn [flags]
  For --duration, --rate connects per second (over the processes), each
  opening /bench/churn-<room>, optionally echoing once, then closing cleanly
  (close frame, the server's close frame, the server's end of the stream).
  Reports connects/s and disconnects/s achieved, handshake latency (connect
  to 101), echo and close latencies, and failures; a connect past
  --concurrency in flight in its process is skipped and counted.
  --rate N              connects per second [500]
  --duration DURATION   [10s]
  --rooms N             [10]
  --message-bytes N     one echo of N bytes per connection; 0 = none [0]
  (--connections does not apply: --rate x --duration connections are made.)

loadtest wake [flags]
  Fills Bench objects (/bench/<prefix>-<i>) with --db-mb MiB each, then times
  the first message to each after it hibernates (polling the admin API), and
  the same message again right after (warm). With --quiet, no admin API:
  each wake comes after its object had no event for that long, and is
  confirmed with `recall` (empty in a fresh instance, `remember:live` is
  sent after each sample), so it runs against any server of the Bench
  protocol; probes that met a live instance count as stayed_live.
  --url URL, --admin ADDR, --json PATH as above
  --target T            torpor or external (a label; external needs --quiet)
                        [torpor]
  --quiet DURATION      wait this long after each object's last event
                        instead of polling the admin API; longer than the
                        server's hibernation timeout (Torpor's
                        hibernate_after, workerd's ~10 s) [poll]
  --variant V           live-worker: the worker process stays up (run the node
                        with a long worker_idle_exit); exited-worker: every
                        worker has exited (pid null in /admin/node) before
                        each wake (run it with a short one) [live-worker]
  --objects N           objects, each with one socket [1]
  --db-mb N             MiB stored in each object first, as 100 KiB puts [100]
  --samples N           wakes timed in all, round-robin over the objects [100]
  --probe echo|get|attach
                        echo:x; get:probe, which also opens the database;
                        getattach, which reads the socket's attachment [echo]
  --prefix NAME         object name prefix [wake]
  --room-sockets N      before sampling, N more sockets per object, opened
                        from idle-client processes (one per 15,000, each
                        from its own 127.0.0.x) and held silent through
                        every sample; the node's max_connections_per_object
                        must allow N + 1 [0]
  --attach-bytes N      attach:<N x 'a'> on each room socket; 0 = none
                        [2000 with --room-sockets]
  --processes N|auto    client processes holding the rooms [auto]

loadtest alarms [flags]
  Sets --count alarms --delay-ms ahead, at most one per object at a time (in
  rounds), and reports how late each alarm:0 arrives after send time + delay.
  Torpor only.
  --url URL, --admin ADDR, --json PATH as above
  --objects N           objects, each with one socket [10]
  --count N             alarms in all [100]
  --delay-ms N          how far ahead each alarm is set [1000]
  --variant V           live: no check; hibernated: every object shows
                        active=false before due; cold: every worker has exited
                        (pid null in /admin/node) before due [live]
  --prefix NAME         object name prefix [alarm]

loadtest reload [flags]
  Swaps the node's workers for another binary (torpor reload), or with
  --deploy upgrade its edges (torpor upgrade), while
  --connections sockets over --rooms Bench objects (/bench/<prefix><i>)
  stay open: objects 0..--busy-rooms carry traffic the whole time, the
  others are quiet and hibernated (polled on the admin API) when the swap
  begins. In a busy object every socket but the first sends `echo:e<n>`,
  its next one --interval after the last (at most --window unanswered); the
  first socket sends `bcast:b<n>` every --bcast-every. Checked: no socket
  closes, every echo is answered exactly once and in order, every socket
  gets every broadcast of its object exactly once, and after the swap every
  object answers `pid` from a new worker (and `version` with
  --expect-version), or after an upgrade every edge runs in a new process
  and the old ones have exited. Measured: the node's report (took_ms, per
  worker drain_ms and gap_ms, or upgrade_ms and per edge took_ms), and
  echo latency and CPU in phases
  `warmup`, `before`, `during` (reload request → answer + --tail) and
  `after`. Torpor only.
  --url, --admin, --processes, --concurrency, --client-cpu, --json as above
  --connections N       [10000]
  --rooms N             [20]
  --busy-rooms N        [half of --rooms]
  --echoers-per-room N  echoing sockets per busy object [all but the first]
  --interval DURATION   between one socket's echoes [100ms]
  --window N            echoes unanswered per socket [1]
  --bcast-every DURATION  [100ms]
  --warmup DURATION     traffic before `before` starts (not a baseline) [3s]
  --before DURATION     traffic before the swap [10s]
  --tail DURATION       `during` goes on this long after the answer [1s]
  --after DURATION      traffic after the swap [10s]
  --deploy KIND         reload (the workers) or upgrade (the edges) [reload]
  --reload-cmd CMD      run with sh -c to swap (its stdout's last JSON line
                        is the report) [POST /admin/reload or /admin/upgrade
                        on --admin]
  --expect-version V    what `version` must answer after a reload
  --prefix NAME         object name prefix [reload-]
  --hibernate-timeout DURATION  for the quiet objects to hibernate [60s]

loadtest attack [flags]
  One client process attacks the node from 127.0.0.2 with --connections
  connections of one --kind; once they are open (at most 60 s), a fresh
  client from 127.0.0.3 tries every 100 ms to upgrade on /echo/<name> and
  get its first echo back, each try failing at 5 s (the default 100 tries
  take 10 s, the shipped handshake_timeout, so stalled connections the node
  admitted are still held during them). Reported: the attack's connects
  (and per second), connections open at once at the peak (TCP, so those
  waiting for their 429 count), held to the end, and how the node ended the
  others; the fresh client's successes, failures by kind (refused, 429,
  timeout, ...) and p50/p99/max connect → first echo; the node's RSS and
  open fds (/proc/PID/fd), its whole process tree summed (/admin/node's
  processes and every descendant of the supervisor), before, at the peak,
  at the end of the attack and after it closed; with --data-dir, the files
  and bytes under the node's data_dir before and after. Exit status 1
  unless every try echoed with p99 <= 100 ms (the issue's goal). Torpor
  only; start the node yourself (loadtest/attack.sh starts one per run and
  runs every kind). With the shipped config, a connection past
  limits.max_frontdoor_connections_per_address (256) from one address is
  answered 429 at once, and the front door has 4096 slots
  (limits.max_frontdoor_connections), so most of an attack's connections
  are refused, not held.
  --url URL, --admin ADDR, --json PATH as above
  --kind K              stalled-heads: a partial request head
                        (GET /echo/x ... Host), then one byte every 3 s;
                        stalled-bodies: a whole POST /counter/<n> head with
                        Content-Length: 9 and never the body;
                        keepalive-idle: one GET /counter/<n> with
                        keep-alive, the answer read, then silence; opened
                        again 1 s after the node closes it;
                        ping-flood: sockets upgraded on /echo/<run>-flood-<n>
                        with a small SO_RCVBUF (--rcvbuf) write empty pings
                        without pause and never read, so the node's pongs
                        back up; reopened 1 s after the node ends one;
                        fast-sender: sockets upgraded on /echo/<run>-fast-<n>
                        write --frame-bytes binary frames back to back,
                        reading the echoes as they come (or, --read false,
                        never); reopened 1 s after the node ends one;
                        object-names: --count GETs of /presence/<run>-<n>,
                        a new object each (a Presence room, which never
                        stores), one at a time per keep-alive connection;
                        counters: --count POSTs to /counter/<run>-<n>, a new
                        Counter each, which stores (a database file);
                        matches: --matches GameRelay matches
                        (/games/<run>-m<m>?tick_ms=N) of --players sockets,
                        each player sending a 16-byte input every 500 ms so
                        its match stays active and ticks; reported: ticks
                        per second per player and the gap between two ticks
                        [stalled-heads]
  --connections N       at most 19000 (one process, 20000 fds) [10000;
                        ping-flood 20; fast-sender 1; object-names and
                        counters 32 keep-alive connections; not for matches]
  --count N             object-names, counters: requests in all, at most
                        10,000,000; the attack ends when they are answered
                        or at --duration, whichever is first, and the fresh
                        client's tries end with it [object-names 1000000;
                        counters 100000]
  --duration DURATION   of the attack, at most 10m (1h with a --count);
                        unless it has a --count, it lasts until the last
                        try is over if that is later [30s]
  --tries N             fresh client tries, 100 ms apart, at most 6000 [100]
  --concurrency N       attack connects in flight at once [256]
  --name NAME           the fresh client's object, /echo/<name> [attack-probe]
  --data-dir PATH       the node's data_dir, to count its files [not counted]
  --matches N           matches: how many [50]
  --players N           matches: sockets per match [2]
  --tick-ms N           matches: tick interval asked for, 10 to 10000 [10]
  --rcvbuf BYTES        ping-flood: each socket's SO_RCVBUF [4096]
  --frame-bytes N       fast-sender: payload of each frame, at most 32 MiB
                        (over the node's max_message_bytes, 1 MiB shipped,
                        the node closes with 1009) [262144]
  --read true|false     fast-sender: read the echoes [true]

loadtest attack-table RESULT.json...
  The \"Under attack\" table of BENCHMARKS.md, in markdown, from saved attack
  runs: a row per kind, each cell the median of that kind's runs
  (loadtest/attack.sh prints it).

loadtest create [flags]
  New objects per second through the HTTP front door: --connections
  keep-alive connections in a closed loop, each request to --path with
  {n} replaced by a name no request used before (this run, connection and
  sequence number), so each answer is an object created. Reports 2xx
  answers/s (objects created), all answers by status, failures, and
  latency p50/p99/max. One client thread; Torpor only, any routes (no
  bench_routes needed). Pin it apart from the node (taskset -c 1).
  --url URL             ws:// or host:port of the node [ws://127.0.0.1:8787]
  --path PATH           [/presence/{n}]; /counter/{n} with --method POST
                        stores a value in each new object
  --method M            [GET]
  --connections N       [32]
  --duration DURATION   measured [10s]
  --warmup DURATION     unmeasured first [1s]
  --json PATH           also write the figures as JSON

loadtest report RESULT.json
  Prints the summary of a saved run and writes its HTML report again.

loadtest medians RESULT.json...
  The median of every figure (and ratio) over several runs of one scenario,
  with each run's value beside it (loadtest/bench.sh prints these).

loadtest baseline-server [flags]
  The baseline server on its own; see `loadtest baseline-server --help`.

Exit status: 0 clean; 1 a run failed or lost connections (the report is
still written); 64 bad flags.
";

/// The part of [`USAGE`] about `command` (from its `loadtest <command>`
/// line to the next blank line before another command), if it has one.
pub fn usage_of(command: &str) -> Option<&'static str> {
    let head = format!("\nloadtest {command} ");
    let start = USAGE.find(&head)? + 1;
    let section = &USAGE[start..];
    let end = section
        .find("\n\nloadtest ")
        .or_else(|| section.find("\n\nExit status"))?;
    Some(&section[..end])
}
