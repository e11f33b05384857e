//! Integration tests: the built binary driven against servers the tests start on
//! 127.0.0.1. One test crate, so polars is linked once.

mod browser;
mod cli;
mod common;
mod demo;
mod deploy;
mod doctor;
mod history;
mod hub;
mod idp;
mod mail;
mod pipeline;
mod report;
mod scim;
mod unattended;
