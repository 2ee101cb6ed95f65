//! One module per scenario, each the parent's side of one `loadtest`
//! command: its options, what it runs against each target through the
//! [fleet](crate::fleet), and the report it fills in. `ping` and `echo`
//! share [rtt]. Scenarios do not use one another.

pub mod alarms;
pub mod attack;
pub mod broadcast;
pub mod churn;
pub mod create;
pub mod idle;
pub mod reload;
pub mod rtt;
pub mod wake;
