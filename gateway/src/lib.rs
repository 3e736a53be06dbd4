//! The `onsale` node binary's library: command-line handling, the node
//! runner and the demo. (The HTTP/websocket gateway comes with its issue.)

pub mod cli;
pub mod demo;
