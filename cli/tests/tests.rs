//! The `pragma` binary as a user runs it: one test binary (as ripgrep's), a
//! file per topic, what they share in `util.rs`.

use assert_cmd::Command;
use predicates::prelude::*;

use util::*;

mod util;

mod careless_bodies;
mod check;
mod control;
mod edge_cases;
mod inspect;
mod interactive;
mod lifecycle;
mod odd_input;
mod power_loss;
mod reflinks;
mod run;
mod slurm;
