//! What a run measures and how: resident memory and the open-files limit
//! ([rss]), CPU time of the processes under test ([cpu]), the kernel's
//! socket memory ([kernel]), [latency] histograms carried between
//! processes, and the [node]'s process tree with each process's memory.
//! These are the value types the report records; nothing here knows a
//! scenario or renders anything.

pub mod cpu;
pub mod kernel;
pub mod latency;
pub mod node;
pub mod rss;
