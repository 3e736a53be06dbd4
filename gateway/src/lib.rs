//! The onsale node binary's library: the HTTP and websocket gateway for
//! fans and operators, the fan web page, and the command line.

pub mod auth;
pub mod catalog;
pub mod cli;
pub mod demo;
pub mod edge;
pub mod http;
pub mod hub;
pub mod page;
pub mod reply;
pub mod telemetry;
pub mod ws;
pub mod ws_frame;

pub use http::{Gateway, GatewayConfig};
