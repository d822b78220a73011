//! The bundled keyflow jobs. Each is a config struct plus a function that
//! builds its dataflow from `keyflow-operators`; nothing reusable lives here.

pub mod activity;
pub mod anomaly;
pub mod baseline;
pub mod behaviour;
pub mod error;
pub mod output_file;
pub mod pageviews;
pub mod trending;

pub use error::{Error, Result};
