//! The report of a run: the [model] every scenario fills in (and that is
//! saved as JSON), the [text] summary printed on stdout, the self-contained
//! [html] page with its [svg] charts, both [save]d beside each other, and
//! the [medians] of several saved runs. Nothing here measures: it reads the model and the value types of
//! the measurements it holds, never the fleet or the scenarios.

pub mod html;
pub mod medians;
pub mod model;
pub mod save;
pub mod svg;
pub mod text;
