//! `assert_eventually!`: poll a condition until it holds or a deadline passes, then fail
//! with a message. Never an unbounded wait.

/// `assert_eventually!(condition, timeout, "format", args..)` re-evaluates `condition` (which
/// may contain `.await`) every 50 ms until it is true; past `timeout` it panics with the
/// message, whose arguments are evaluated at failure time (so they can show the last value).
macro_rules! assert_eventually {
    ($cond:expr, $timeout:expr, $($msg:tt)+) => {{
        let timeout: ::std::time::Duration = $timeout;
        let deadline = ::std::time::Instant::now() + timeout;
        loop {
            if $cond {
                break;
            }
            if ::std::time::Instant::now() >= deadline {
                panic!(
                    "not true within {:?}: {}",
                    timeout,
                    format!($($msg)+)
                );
            }
            ::tokio::time::sleep(::std::time::Duration::from_millis(50)).await;
        }
    }};
}

pub(crate) use assert_eventually;
