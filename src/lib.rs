//! `hubreview`: access reviews and seat reconciliation for Docker Hub organizations.
//!
//! The pipeline, one module per step: [`config`] -> [`scim`] (and [`hub`], [`activity`]) and
//! [`idp`] -> [`store`] -> [`reconcile`] (with [`exceptions`]) -> [`report`] -> [`mail`]. [`run`] only orders
//! them; [`cli`] parses the command line; [`demo`] serves the built-in organization.
//! [`lock`] keeps two runs from writing one store, [`metrics`] exports each run's counts,
//! and [`doctor`] checks a setup without changing it;
//! [`verify`] re-checks a written report against its manifest.

pub mod activity;
pub mod cli;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod exceptions;
pub mod http;
pub mod hub;
pub mod idp;
pub mod lock;
pub mod mail;
pub mod metrics;
pub mod reconcile;
pub mod report;
pub mod run;
pub mod scim;
pub mod store;
pub mod verify;

/// mimalloc for every allocation: reconciliation makes millions of small strings, where it
/// is faster than the system allocator and wastes less memory per string.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
