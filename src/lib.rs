//! `hubreview`: access reviews and seat reconciliation for Docker Hub organizations.
//!
//! The pipeline, one module per step: [`config`] -> [`scim`] (and [`activity`]) and
//! [`idp`] -> [`store`] -> [`reconcile`] -> [`report`] -> [`mail`]. [`run`] only orders
//! them; [`cli`] parses the command line; [`demo`] serves the built-in organization;
//! [`verify`] re-checks a written report against its manifest.

pub mod activity;
pub mod cli;
pub mod config;
pub mod demo;
pub mod http;
pub mod idp;
pub mod mail;
pub mod reconcile;
pub mod report;
pub mod run;
pub mod scim;
pub mod store;
pub mod verify;
