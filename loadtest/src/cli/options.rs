//! Flags to options: each command's flags, with their defaults and the
//! combinations it refuses, parsed into the options its scenario or child
//! process takes. The defaults here are the ones the usage text promises.

use std::time::Duration;

use crate::child::idle::ClientOptions;
use crate::child::protocol::{Kind, TrafficOptions};
use crate::child::reload_protocol::ReloadClientOptions;
use crate::cli::flags::Flags;
use crate::fleet::run::Common;
use crate::fleet::server::{External, Placement};
use crate::report::model::TargetKind;
use crate::scenarios::alarms::{AlarmOptions, Variant};
use crate::scenarios::attack::{AttackKind, AttackOptions};
use crate::scenarios::broadcast::BroadcastOptions;
use crate::scenarios::churn::ChurnOptions;
use crate::scenarios::create::CreateOptions;
use crate::scenarios::idle::IdleOptions;
use crate::scenarios::reload::{Deploy, ReloadOptions};
use crate::scenarios::rtt::RttOptions;
use crate::scenarios::wake::{self, Probe, WakeOptions};

/// `--processes N|auto`: `None` for auto.
fn processes(flags: &mut Flags) -> Result<Option<u32>, String> {
    Ok(match flags.optional_string("processes")?.as_deref() {
        None | Some("auto") => None,
        Some(n) => Some(
            n.parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("--processes {n:?} is not auto or a number from 1"))?,
        ),
    })
}

/// The flags every traffic scenario takes.
pub fn common(flags: &mut Flags) -> Result<Common, String> {
    let target = flags.optional_string("target")?;
    let baselines = flags.boolean("baselines", false)?;
    let processes = processes(flags)?;
    let targets = parse_targets(target.as_deref(), baselines)?;
    let external = external(flags, targets.contains(&TargetKind::External))?;
    Ok(Common {
        url: flags.string("url", "ws://127.0.0.1:8787")?,
        admin: flags.string("admin", "127.0.0.1:9090")?,
        targets,
        external,
        placement: Placement {
            server_cpus: flags.cpus("server-cpu", "0")?,
            client_cpus: flags.cpus("client-cpu", "1")?,
            baseline_threads: flags.optional_number("baseline-threads")?,
        },
        processes,
        concurrency: flags.positive("concurrency", 256)?,
        json: flags.path("json")?,
    })
}

/// `--external-url` and `--external-pid`: both, and only, when an external
/// target is asked for.
fn external(flags: &mut Flags, wanted: bool) -> Result<Option<External>, String> {
    if !wanted {
        for flag in ["external-url", "external-pid"] {
            flags.refuse(flag, "it is for --target external")?;
        }
        return Ok(None);
    }
    let url = flags
        .optional_string("external-url")?
        .ok_or("--target external needs --external-url (the server's ws://host:port)")?;
    let pid = flags.optional_number::<u32>("external-pid")?.ok_or(
        "--target external needs --external-pid (the server's pid, measured with its descendants)",
    )?;
    Ok(Some(External { url, pid }))
}

/// `--target` (`torpor`, `default`, `tuned`, `external`, several joined by
/// commas, or `all`) and `--baselines` (the same as `--target all`) to the
/// list of servers, Torpor first. `all` is Torpor and the two baselines: an
/// external server is only run when named.
pub fn parse_targets(target: Option<&str>, baselines: bool) -> Result<Vec<TargetKind>, String> {
    use TargetKind::*;
    let Some(target) = target else {
        return Ok(if baselines {
            vec![Torpor, Default, Tuned]
        } else {
            vec![Torpor]
        });
    };
    if target == "all" {
        return Ok(vec![Torpor, Default, Tuned]);
    }
    if baselines {
        return Err("--baselines runs every target; leave out --target or use --target all".into());
    }
    let mut list = Vec::new();
    for name in target.split(',') {
        let kind = match name {
            "torpor" => Torpor,
            "default" => Default,
            "tuned" => Tuned,
            "external" => External,
            other => {
                return Err(format!(
                    "--target {other:?} is not torpor, default, tuned, external or all"
                ))
            }
        };
        if !list.contains(&kind) {
            list.push(kind);
        }
    }
    // Torpor first: the comparisons are Torpor's figures over the others'.
    list.sort_unstable();
    Ok(list)
}

pub fn idle_options(args: &[String]) -> Result<IdleOptions, String> {
    let mut flags = Flags::parse(args)?;
    for flag in ["duration", "rate", "message-bytes"] {
        flags.refuse(flag, "idle connections send nothing")?;
    }
    let opts = IdleOptions {
        common: common(&mut flags)?,
        connections: flags.positive("connections", 15_000)?,
        rooms: flags.positive("rooms", 100)?,
        attach_bytes: flags.number("attach-bytes", 0)?,
        hold: flags.duration("hold", Duration::from_secs(10))?,
        open_timeout: flags.duration("open-timeout", Duration::from_secs(240))?,
        probe_sockets: flags.number("probe-sockets", 8)?,
        probe_rate: probe_rate(&mut flags)?,
    };
    flags.finish()?;
    Ok(opts)
}

/// `--probe-rate`: pings per second of idle's probe, 0 for none.
fn probe_rate(flags: &mut Flags) -> Result<f64, String> {
    let rate: f64 = flags.number("probe-rate", 100.0)?;
    if rate >= 0.0 && rate.is_finite() {
        Ok(rate)
    } else {
        Err("--probe-rate must be 0 (no probe) or a positive number".into())
    }
}

pub fn rate(flags: &mut Flags, name: &str) -> Result<Option<f64>, String> {
    flags
        .optional_number::<f64>(name)?
        .map(|r| {
            if r > 0.0 && r.is_finite() {
                Ok(r)
            } else {
                Err(format!("--{name} must be a positive number"))
            }
        })
        .transpose()
}

pub fn rtt_options(kind: Kind, args: &[String]) -> Result<RttOptions, String> {
    let mut flags = Flags::parse(args)?;
    if kind == Kind::Ping {
        flags.refuse(
            "message-bytes",
            "ping's message is always `ping` (the auto-response matches it exactly)",
        )?;
    }
    let opts = RttOptions {
        common: common(&mut flags)?,
        kind,
        connections: flags.positive("connections", 1000)?,
        rooms: flags.positive("rooms", 10)?,
        duration: flags.duration("duration", Duration::from_secs(10))?,
        warmup: flags.duration("warmup", Duration::from_secs(1))?,
        window: flags.positive("window", 1)?,
        rate: rate(&mut flags, "rate")?,
        message_bytes: flags.number("message-bytes", 32)?,
    };
    flags.finish()?;
    if opts.duration.is_zero() {
        return Err("--duration must be more than 0".into());
    }
    Ok(opts)
}

pub fn broadcast_options(args: &[String]) -> Result<BroadcastOptions, String> {
    let mut flags = Flags::parse(args)?;
    flags.refuse("rooms", "a broadcast goes to the sockets of one object")?;
    let opts = BroadcastOptions {
        common: common(&mut flags)?,
        connections: flags.positive("connections", 1000)?,
        duration: flags.duration("duration", Duration::from_secs(10))?,
        window: flags.positive("window", 8)?,
        rate: rate(&mut flags, "rate")?,
        message_bytes: flags.number("message-bytes", 32)?,
    };
    flags.finish()?;
    if opts.duration.is_zero() {
        return Err("--duration must be more than 0".into());
    }
    Ok(opts)
}

pub fn churn_options(args: &[String]) -> Result<ChurnOptions, String> {
    let mut flags = Flags::parse(args)?;
    flags.refuse(
        "connections",
        "churn makes --rate x --duration connections, a few at a time",
    )?;
    let opts = ChurnOptions {
        common: common(&mut flags)?,
        rooms: flags.positive("rooms", 10)?,
        duration: flags.duration("duration", Duration::from_secs(10))?,
        rate: rate(&mut flags, "rate")?.unwrap_or(500.0),
        message_bytes: flags.number("message-bytes", 0)?,
    };
    flags.finish()?;
    if opts.duration.is_zero() {
        return Err("--duration must be more than 0".into());
    }
    Ok(opts)
}

pub fn wake_options(args: &[String]) -> Result<WakeOptions, String> {
    let mut flags = Flags::parse(args)?;
    let mut opts = WakeOptions {
        url: flags.string("url", "ws://127.0.0.1:8787")?,
        admin: flags.string("admin", "127.0.0.1:9090")?,
        objects: flags.number("objects", 1)?,
        db_mb: flags.number("db-mb", 100)?,
        samples: flags.number("samples", 100)?,
        probe: Probe::parse(&flags.string("probe", "echo")?)
            .map_err(|e| format!("--probe: {e}"))?,
        variant: wake::Variant::parse(&flags.string("variant", "live-worker")?)
            .map_err(|e| format!("--variant: {e}"))?,
        prefix: flags.string("prefix", "wake")?,
        json: flags.path("json")?,
        target: match flags.string("target", "torpor")?.as_str() {
            "torpor" => TargetKind::Torpor,
            "external" => TargetKind::External,
            other => return Err(format!("--target {other:?} is not torpor or external")),
        },
        quiet: flags
            .optional_string("quiet")?
            .map(|text| crate::cli::flags::parse_duration(&text))
            .transpose()
            .map_err(|e| format!("--quiet: {e}"))?,
        room_sockets: flags.number("room-sockets", 0)?,
        attach_bytes: 0,
        processes: processes(&mut flags)?,
    };
    opts.attach_bytes = match flags.optional_number("attach-bytes")? {
        Some(_) if opts.room_sockets == 0 => {
            return Err("--attach-bytes is for the sockets of --room-sockets".into())
        }
        Some(bytes) => bytes,
        None if opts.room_sockets > 0 => wake::DEFAULT_ATTACH_BYTES,
        None => 0,
    };
    flags.finish()?;
    if opts.room_sockets == 0 && opts.processes.is_some() {
        return Err("--processes is for the sockets of --room-sockets".into());
    }
    if opts.room_sockets > 0 && opts.quiet.is_some() {
        return Err(
            "--room-sockets needs the admin API to check the rooms: not with --quiet".into(),
        );
    }
    if opts.target == TargetKind::External && opts.quiet.is_none() {
        return Err("--target external needs --quiet (it has no admin API to poll)".into());
    }
    Ok(opts)
}

pub fn alarm_options(args: &[String]) -> Result<AlarmOptions, String> {
    let mut flags = Flags::parse(args)?;
    let opts = AlarmOptions {
        url: flags.string("url", "ws://127.0.0.1:8787")?,
        admin: flags.string("admin", "127.0.0.1:9090")?,
        objects: flags.number("objects", 10)?,
        count: flags.number("count", 100)?,
        delay: Duration::from_millis(flags.number("delay-ms", 1000)?),
        variant: Variant::parse(&flags.string("variant", "live")?)
            .map_err(|e| format!("--variant: {e}"))?,
        prefix: flags.string("prefix", "alarm")?,
        json: flags.path("json")?,
    };
    flags.finish()?;
    Ok(opts)
}

pub fn reload_options(args: &[String]) -> Result<ReloadOptions, String> {
    let mut flags = Flags::parse(args)?;
    for flag in ["target", "baselines"] {
        flags.refuse(flag, "a reload is Torpor's alone")?;
    }
    let common = common(&mut flags)?;
    let rooms: u32 = flags.positive("rooms", 20)?;
    let opts = ReloadOptions {
        common,
        connections: flags.positive("connections", 10_000)?,
        rooms,
        busy_rooms: flags.number("busy-rooms", rooms / 2)?,
        echoers_per_room: flags.optional_number("echoers-per-room")?,
        interval: flags.duration("interval", Duration::from_millis(100))?,
        window: flags.positive("window", 1)?,
        bcast_every: flags.duration("bcast-every", Duration::from_millis(100))?,
        warmup: flags.duration("warmup", Duration::from_secs(3))?,
        before: flags.duration("before", Duration::from_secs(10))?,
        tail: flags.duration("tail", Duration::from_secs(1))?,
        after: flags.duration("after", Duration::from_secs(10))?,
        deploy: Deploy::parse(&flags.string("deploy", "reload")?)
            .map_err(|e| format!("--deploy: {e}"))?,
        reload_cmd: flags.optional_string("reload-cmd")?,
        expect_version: flags.optional_string("expect-version")?,
        prefix: flags.string("prefix", "reload-")?,
        hibernate_timeout: flags.duration("hibernate-timeout", Duration::from_secs(60))?,
    };
    flags.finish()?;
    if opts.busy_rooms > opts.rooms {
        return Err(format!(
            "--busy-rooms {} is more than --rooms {}",
            opts.busy_rooms, opts.rooms
        ));
    }
    if u64::from(opts.rooms) > opts.connections {
        return Err("--connections must be at least --rooms (one socket per object)".into());
    }
    if opts.deploy == Deploy::Upgrade && opts.expect_version.is_some() {
        return Err("--expect-version is for a reload: an upgrade keeps the workers".into());
    }
    if opts.bcast_every.is_zero() {
        return Err("--bcast-every must be more than 0".into());
    }
    Ok(opts)
}

pub fn attack_options(args: &[String]) -> Result<AttackOptions, String> {
    let mut flags = Flags::parse(args)?;
    let kind = AttackKind::parse(&flags.string("kind", "stalled-heads")?)
        .map_err(|e| format!("--kind: {e}"))?;
    if kind != AttackKind::PingFlood {
        flags.refuse("rcvbuf", "only ping-flood sets a receive buffer")?;
    }
    let (connections, players) = if kind == AttackKind::Matches {
        flags.refuse("connections", "matches opens --matches x --players sockets")?;
        let matches: u64 = flags.positive("matches", 50)?;
        let players: u32 = flags.positive("players", 2)?;
        (matches.saturating_mul(u64::from(players)), players)
    } else {
        for flag in ["matches", "players", "tick-ms"] {
            flags.refuse(flag, "only the matches kind has matches")?;
        }
        (
            flags.positive("connections", kind.default_connections())?,
            1,
        )
    };
    if kind.default_count().is_none() {
        flags.refuse(
            "count",
            "only object-names and counters make a count of requests",
        )?;
    }
    if kind != AttackKind::FastSender {
        flags.refuse("frame-bytes", "only fast-sender sends data frames")?;
        flags.refuse("read", "only fast-sender has replies to read")?;
    }
    let opts = AttackOptions {
        url: flags.string("url", "ws://127.0.0.1:8787")?,
        admin: flags.string("admin", "127.0.0.1:9090")?,
        kind,
        connections,
        duration: flags.duration("duration", Duration::from_secs(30))?,
        tries: flags.positive("tries", 100)?,
        concurrency: flags.positive("concurrency", 256)?,
        name: flags.string("name", "attack-probe")?,
        data_dir: flags.path("data-dir")?,
        rcvbuf_bytes: flags.positive("rcvbuf", 4096)?,
        frame_bytes: flags.positive("frame-bytes", 256 * 1024)?,
        read_replies: flags.boolean("read", true)?,
        players,
        tick_ms: flags.number("tick-ms", 10)?,
        count: match kind.default_count() {
            Some(default) => flags.positive("count", default)?,
            None => 0,
        },
        json: flags.path("json")?,
    };
    flags.finish()?;
    opts.check()?;
    Ok(opts)
}

pub fn create_options(args: &[String]) -> Result<CreateOptions, String> {
    let mut flags = Flags::parse(args)?;
    let url = flags.string("url", "ws://127.0.0.1:8787")?;
    let opts = CreateOptions {
        // Target::parse wants ws://; host:port alone is accepted too.
        url: if url.contains("://") {
            url
        } else {
            format!("ws://{url}")
        },
        path: flags.string("path", "/presence/{n}")?,
        method: flags.string("method", "GET")?,
        connections: flags.positive("connections", 32)?,
        duration: flags.duration("duration", Duration::from_secs(10))?,
        warmup: flags.duration("warmup", Duration::from_secs(1))?,
        json: flags.path("json")?,
    };
    flags.finish()?;
    opts.check()?;
    Ok(opts)
}

pub fn reload_client_options(args: &[String]) -> Result<ReloadClientOptions, String> {
    let mut flags = Flags::parse(args)?;
    let opts = ReloadClientOptions {
        url: flags.required("url")?,
        room_prefix: flags.required("room-prefix")?,
        rooms: flags.required_number("rooms")?,
        busy_rooms: flags.required_number("busy-rooms")?,
        echoers_per_room: flags.required_number("echoers-per-room")?,
        first_index: flags.required_number("first-index")?,
        connections: flags.required_number("connections")?,
        source_ip: flags.required_number("source-ip")?,
        concurrency: flags.required_number("concurrency")?,
    };
    flags.finish()?;
    Ok(opts)
}

pub fn client_options(args: &[String]) -> Result<ClientOptions, String> {
    let mut flags = Flags::parse(args)?;
    let opts = ClientOptions {
        url: flags.required("url")?,
        room_prefix: flags.required("room-prefix")?,
        rooms: flags.required_number("rooms")?,
        first_index: flags.required_number("first-index")?,
        connections: flags.required_number("connections")?,
        attach_bytes: flags.required_number("attach-bytes")?,
        source_ip: flags.required_number("source-ip")?,
        concurrency: flags.required_number("concurrency")?,
        open_deadline: flags.duration("open-deadline", Duration::from_secs(240))?,
        hold_deadline: flags.duration("hold-deadline", Duration::from_secs(600))?,
    };
    flags.finish()?;
    Ok(opts)
}

pub fn traffic_options(args: &[String]) -> Result<TrafficOptions, String> {
    let mut flags = Flags::parse(args)?;
    let opts = TrafficOptions {
        url: flags.required("url")?,
        kind: Kind::parse(&flags.required("kind")?)?,
        room_prefix: flags.required("room-prefix")?,
        rooms: flags.required_number("rooms")?,
        first_index: flags.required_number("first-index")?,
        connections: flags.required_number("connections")?,
        source_ip: flags.required_number("source-ip")?,
        concurrency: flags.required_number("concurrency")?,
        message_bytes: flags.required_number("message-bytes")?,
    };
    flags.finish()?;
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn idle_flags_take_defaults_and_both_spellings() {
        let opts = idle_options(&args(&[
            "--connections=2000",
            "--attach-bytes",
            "2000",
            "--hold",
            "1s",
        ]))
        .unwrap();
        assert_eq!(opts.connections, 2000);
        assert_eq!(opts.attach_bytes, 2000);
        assert_eq!(opts.hold, Duration::from_secs(1));
        assert_eq!(opts.common.processes, None);
        assert_eq!(opts.rooms, 100);
        assert_eq!(opts.common.targets, [TargetKind::Torpor]);
        assert_eq!((opts.probe_sockets, opts.probe_rate), (8, 100.0));
        let quiet = idle_options(&args(&["--probe-rate", "0"])).unwrap();
        assert_eq!(quiet.probe_rate, 0.0);
        assert!(idle_options(&args(&["--probe-rate", "-1"])).is_err());
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        assert!(idle_options(&args(&["--conections", "5"])).is_err());
        assert!(idle_options(&args(&["--connections", "many"])).is_err());
        assert!(idle_options(&args(&["--connections", "0"])).is_err());
        assert!(idle_options(&args(&["--rooms", "1", "--rooms", "2"])).is_err());
        assert!(idle_options(&args(&["stray"])).is_err());
        let err = idle_options(&args(&["--duration", "5s"])).unwrap_err();
        assert!(err.contains("idle connections send nothing"), "{err}");
    }

    #[test]
    fn an_external_target_needs_its_url_and_pid_and_nothing_else_takes_them() {
        let opts = idle_options(&args(&[
            "--target",
            "torpor,external",
            "--external-url",
            "ws://127.0.0.1:8788",
            "--external-pid",
            "4242",
        ]))
        .unwrap();
        assert_eq!(
            opts.common.targets,
            [TargetKind::Torpor, TargetKind::External]
        );
        assert_eq!(
            opts.common.external,
            Some(External {
                url: "ws://127.0.0.1:8788".into(),
                pid: 4242
            })
        );
        let err =
            idle_options(&args(&["--target", "external", "--external-pid", "1"])).unwrap_err();
        assert!(err.contains("--external-url"), "{err}");
        let err = idle_options(&args(&[
            "--target",
            "external",
            "--external-url",
            "ws://127.0.0.1:8788",
        ]))
        .unwrap_err();
        assert!(err.contains("--external-pid"), "{err}");
        assert!(idle_options(&args(&["--external-pid", "1"])).is_err());
    }

    #[test]
    fn wake_against_a_server_without_admin_api_waits_quiet() {
        let wake = wake_options(&args(&["--target", "external", "--quiet", "15s"])).unwrap();
        assert_eq!(wake.target, TargetKind::External);
        assert_eq!(wake.quiet, Some(Duration::from_secs(15)));
        assert_eq!(wake_options(&[]).unwrap().quiet, None);
        let err = wake_options(&args(&["--target", "external"])).unwrap_err();
        assert!(err.contains("--quiet"), "{err}");
        assert!(wake_options(&args(&["--quiet", "soon"])).is_err());
    }

    #[test]
    fn ping_refuses_a_message_size_and_echo_takes_one() {
        let err = rtt_options(Kind::Ping, &args(&["--message-bytes", "64"])).unwrap_err();
        assert!(err.contains("always `ping`"), "{err}");
        let echo = rtt_options(
            Kind::Echo,
            &args(&[
                "--message-bytes",
                "64",
                "--rate",
                "5000",
                "--baselines",
                "--window",
                "4",
            ]),
        )
        .unwrap();
        assert_eq!(echo.message_bytes, 64);
        assert_eq!(echo.rate, Some(5000.0));
        assert_eq!(echo.window, 4);
        assert_eq!(echo.common.targets.len(), 3);
        let ping = rtt_options(Kind::Ping, &[]).unwrap();
        assert_eq!((ping.connections, ping.rooms, ping.rate), (1000, 10, None));
        assert_eq!(ping.duration, Duration::from_secs(10));
        assert!(rtt_options(Kind::Ping, &args(&["--rate", "0"])).is_err());
        assert!(rtt_options(Kind::Ping, &args(&["--rate", "-3"])).is_err());
        assert!(rtt_options(Kind::Ping, &args(&["--duration", "0s"])).is_err());
    }

    #[test]
    fn broadcast_and_churn_refuse_what_they_do_not_use() {
        let err = broadcast_options(&args(&["--rooms", "2"])).unwrap_err();
        assert!(err.contains("one object"), "{err}");
        let b = broadcast_options(&args(&["--connections", "10000", "--processes", "2"])).unwrap();
        assert_eq!((b.connections, b.window, b.rate), (10_000, 8, None));
        assert_eq!(b.common.processes, Some(2));
        let err = churn_options(&args(&["--connections", "5"])).unwrap_err();
        assert!(err.contains("--rate x --duration"), "{err}");
        let c = churn_options(&args(&["--rate", "200", "--message-bytes", "16"])).unwrap();
        assert_eq!((c.rate, c.message_bytes, c.rooms), (200.0, 16, 10));
    }

    #[test]
    fn wake_and_alarm_flags_parse() {
        let wake = wake_options(&args(&[
            "--db-mb",
            "0",
            "--probe=get",
            "--samples",
            "7",
            "--variant",
            "exited-worker",
        ]))
        .unwrap();
        assert_eq!((wake.db_mb, wake.samples, wake.objects), (0, 7, 1));
        assert_eq!(wake.probe, Probe::Get);
        assert_eq!(wake.variant, wake::Variant::ExitedWorker);
        assert_eq!(
            wake_options(&[]).unwrap().variant,
            wake::Variant::LiveWorker
        );
        assert!(wake_options(&args(&["--probe", "ping"])).is_err());
        assert!(wake_options(&args(&["--variant", "cold"])).is_err());
        assert!(wake_options(&args(&["--json"])).is_err());
        let room = wake_options(&args(&["--room-sockets", "32768"])).unwrap();
        assert_eq!((room.room_sockets, room.attach_bytes), (32_768, 2000));
        assert_eq!(room.processes, None);
        let split = wake_options(&args(&["--room-sockets", "900", "--processes", "3"])).unwrap();
        assert_eq!(split.processes, Some(3));
        assert!(wake_options(&args(&["--processes", "3"])).is_err());
        let bare = wake_options(&args(&["--room-sockets=10", "--attach-bytes=0"])).unwrap();
        assert_eq!((bare.room_sockets, bare.attach_bytes), (10, 0));
        assert_eq!(wake_options(&[]).unwrap().attach_bytes, 0);
        let err = wake_options(&args(&["--attach-bytes", "100"])).unwrap_err();
        assert!(err.contains("--room-sockets"), "{err}");
        let err = wake_options(&args(&["--room-sockets", "5", "--quiet", "15s"])).unwrap_err();
        assert!(err.contains("admin API"), "{err}");

        let alarms = alarm_options(&args(&["--delay-ms", "250", "--variant", "cold"])).unwrap();
        assert_eq!(alarms.delay, Duration::from_millis(250));
        assert_eq!(alarms.variant, Variant::Cold);
        assert_eq!((alarms.objects, alarms.count), (10, 100));
        assert!(alarm_options(&args(&["--variant", "warm"])).is_err());
        assert!(alarm_options(&args(&["--delay", "5"])).is_err());
    }

    #[test]
    fn child_flags_parse_what_the_parent_writes() {
        let idle = IdleOptions {
            common: common(&mut Flags::parse(&args(&["--processes", "3"])).unwrap()).unwrap(),
            connections: 3000,
            rooms: 7,
            attach_bytes: 100,
            hold: Duration::from_secs(1),
            open_timeout: Duration::from_secs(240),
            probe_sockets: 8,
            probe_rate: 100.0,
        };
        let child = crate::scenarios::idle::plan(&idle, "ws://127.0.0.1:18787", 3000)
            .unwrap()
            .remove(2);
        assert_eq!(client_options(&child.to_args()), Ok(child));

        let traffic = TrafficOptions {
            url: "ws://127.0.0.1:18787".into(),
            kind: Kind::Broadcast,
            room_prefix: "bcast-".into(),
            rooms: 1,
            first_index: 5000,
            connections: 5000,
            source_ip: std::net::Ipv4Addr::new(127, 0, 0, 11),
            concurrency: 256,
            message_bytes: 32,
        };
        assert_eq!(traffic_options(&traffic.to_args()), Ok(traffic));

        let reload = ReloadClientOptions {
            url: "ws://127.0.0.1:18787".into(),
            room_prefix: "reload-".into(),
            rooms: 20,
            busy_rooms: 10,
            echoers_per_room: u64::MAX,
            first_index: 5000,
            connections: 5000,
            source_ip: std::net::Ipv4Addr::new(127, 0, 0, 11),
            concurrency: 256,
        };
        assert_eq!(reload_client_options(&reload.to_args()), Ok(reload));
    }

    #[test]
    fn reload_flags_take_defaults_and_refuse_baselines() {
        let opts = reload_options(&[]).unwrap();
        assert_eq!(
            (opts.connections, opts.rooms, opts.busy_rooms),
            (10_000, 20, 10)
        );
        assert_eq!(opts.interval, Duration::from_millis(100));
        assert_eq!((opts.reload_cmd, opts.expect_version), (None, None));
        assert_eq!(opts.deploy, Deploy::Reload);
        let opts = reload_options(&args(&[
            "--reload-cmd",
            "mv b a && torpor reload",
            "--expect-version",
            "0.1.0+b",
            "--rooms",
            "4",
            "--busy-rooms",
            "3",
            "--echoers-per-room",
            "10",
        ]))
        .unwrap();
        assert_eq!(opts.reload_cmd.as_deref(), Some("mv b a && torpor reload"));
        assert_eq!((opts.busy_rooms, opts.echoers_per_room), (3, Some(10)));
        assert!(reload_options(&args(&["--baselines"])).is_err());
        assert!(reload_options(&args(&["--rooms", "2", "--busy-rooms", "3"])).is_err());
        assert!(reload_options(&args(&["--connections", "5", "--rooms", "6"])).is_err());
        assert!(reload_options(&args(&["--bcast-every", "0s"])).is_err());
    }

    #[test]
    fn reload_flags_take_an_upgrade_without_a_version() {
        let opts = reload_options(&args(&[
            "--deploy",
            "upgrade",
            "--reload-cmd",
            "mv b a && torpor upgrade",
        ]))
        .unwrap();
        assert_eq!(opts.deploy, Deploy::Upgrade);
        assert_eq!(opts.reload_cmd.as_deref(), Some("mv b a && torpor upgrade"));
        let refused = reload_options(&args(&["--deploy", "upgrade", "--expect-version", "x"]));
        assert!(refused.unwrap_err().contains("--expect-version"));
        let refused = reload_options(&args(&["--deploy", "edges"]));
        assert!(refused.unwrap_err().contains("--deploy"));
    }

    #[test]
    fn attack_flags_take_defaults_and_bounds() {
        let opts = attack_options(&[]).unwrap();
        assert_eq!(opts.kind, AttackKind::StalledHeads);
        assert_eq!((opts.connections, opts.tries), (10_000, 100));
        assert_eq!(opts.duration, Duration::from_secs(30));
        let opts =
            attack_options(&args(&["--kind", "keepalive-idle", "--connections", "500"])).unwrap();
        assert_eq!(
            (opts.kind, opts.connections),
            (AttackKind::KeepaliveIdle, 500)
        );
        assert!(attack_options(&args(&["--kind", "slowloris"])).is_err());
        assert!(attack_options(&args(&["--connections", "50000"])).is_err());
        assert!(attack_options(&args(&["--duration", "0s"])).is_err());
        assert!(attack_options(&args(&["--rooms", "3"])).is_err());
    }

    #[test]
    fn attack_kinds_default_to_the_issues_numbers_and_refuse_others_flags() {
        let flood = attack_options(&args(&["--kind", "ping-flood"])).unwrap();
        assert_eq!((flood.connections, flood.rcvbuf_bytes), (20, 4096));
        let fast = attack_options(&args(&["--kind", "fast-sender", "--read", "no"])).unwrap();
        assert_eq!(
            (fast.connections, fast.frame_bytes, fast.read_replies),
            (1, 256 * 1024, false)
        );
        let err = attack_options(&args(&["--kind", "fast-sender", "--rcvbuf", "1"]));
        assert!(err.unwrap_err().contains("only ping-flood"));
        let err = attack_options(&args(&["--frame-bytes", "10"]));
        assert!(err.unwrap_err().contains("only fast-sender"));
        let names = attack_options(&args(&["--kind", "object-names"])).unwrap();
        assert_eq!((names.count, names.connections), (1_000_000, 32));
        let counters = attack_options(&args(&["--kind", "counters", "--count", "5"])).unwrap();
        assert_eq!(counters.count, 5);
        let err = attack_options(&args(&["--kind", "ping-flood", "--count", "5"]));
        assert!(err.unwrap_err().contains("only object-names and counters"));
        let games = attack_options(&args(&["--kind", "matches"])).unwrap();
        assert_eq!(
            (games.connections, games.players, games.tick_ms),
            (100, 2, 10)
        );
        assert_eq!(games.matches(), 50);
        let games = attack_options(&args(&[
            "--kind",
            "matches",
            "--matches",
            "3",
            "--players",
            "4",
        ]))
        .unwrap();
        assert_eq!((games.connections, games.matches()), (12, 3));
        let err = attack_options(&args(&["--kind", "matches", "--connections", "5"]));
        assert!(err.unwrap_err().contains("--matches x --players"));
        assert!(attack_options(&args(&["--kind", "counters", "--players", "2"])).is_err());
        assert!(attack_options(&args(&["--kind", "matches", "--tick-ms", "5"])).is_err());
    }

    #[test]
    fn common_flags_have_defaults() {
        let mut flags = Flags::parse(&[]).unwrap();
        let c = common(&mut flags).unwrap();
        assert_eq!(c.url, "ws://127.0.0.1:8787");
        assert_eq!(c.targets, [TargetKind::Torpor]);
        assert_eq!(c.placement.server_cpus.as_deref(), Some("0"));
        assert_eq!(c.placement.client_cpus.as_deref(), Some("1"));
        assert_eq!(c.processes, None);
        assert_eq!(c.processes_for(40_000), 3);
        flags.finish().unwrap();
    }

    #[test]
    fn common_flags_parse_targets_processes_and_cpus() {
        let mut flags = Flags::parse(&args(&[
            "--baselines",
            "true",
            "--processes",
            "3",
            "--client-cpu",
            "none",
            "--baseline-threads",
            "2",
        ]))
        .unwrap();
        let c = common(&mut flags).unwrap();
        assert_eq!(c.targets.len(), 3);
        assert_eq!(c.processes, Some(3));
        assert_eq!(c.placement.client_cpus, None);
        assert_eq!(c.placement.baseline_threads, Some(2));
        for bad in [
            ["--processes", "0"],
            ["--target", "x"],
            ["--server-cpu", "a"],
        ] {
            let mut flags = Flags::parse(&args(&bad)).unwrap();
            assert!(common(&mut flags).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn targets_follow_the_flags() {
        use TargetKind::{Default, Torpor, Tuned};
        assert_eq!(parse_targets(None, false), Ok(vec![Torpor]));
        assert_eq!(parse_targets(None, true), Ok(vec![Torpor, Default, Tuned]));
        assert_eq!(
            parse_targets(Some("all"), true),
            Ok(vec![Torpor, Default, Tuned])
        );
        assert_eq!(parse_targets(Some("tuned"), false), Ok(vec![Tuned]));
        assert!(parse_targets(Some("tuned"), true).is_err());
        assert!(parse_targets(Some("nginx"), false).is_err());
        assert_eq!(
            parse_targets(Some("external,torpor,external"), false),
            Ok(vec![Torpor, TargetKind::External])
        );
        assert!(parse_targets(Some("torpor,"), false).is_err());
    }
}
