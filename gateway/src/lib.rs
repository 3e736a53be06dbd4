//! The `onsale` node binary's library: command-line handling, the node
//! runner, the demo and the HTTP gateway (first slice: JSON API, no
//! websocket or sessions yet).

pub mod cli;
pub mod demo;
pub mod http;
