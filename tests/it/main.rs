//! Integration tests: the built binary driven against servers the tests start on
//! 127.0.0.1. One test crate, so polars is linked once.

mod browser;
mod cli;
mod common;
mod demo;
mod pipeline;
mod report;
