//! The onsale gateway, a library over a node handle: the HTTP API for
//! fans, operators and the payment provider's webhook (`http`), one
//! websocket task per fan (`ws`, `ws_frame`), the hub that fans the
//! events' pushes out to this gateway's connections (`hub`), the edge
//! cache and rate limits (`edge`), the catalogue (`catalog`), and the fan
//! web page (`page`). The `onsale` binary in `node/` assembles a node and
//! serves it; this crate knows nothing of flags, files or process setup.

pub mod auth;
pub mod catalog;
pub mod client;
pub mod edge;
pub mod http;
pub mod hub;
pub mod page;
pub mod reply;
pub mod stamp_desk;
pub mod telemetry;
pub mod ws;
pub mod ws_frame;

pub use http::{Gateway, GatewayConfig};
