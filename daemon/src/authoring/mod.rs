//! Writing plugins: `warren plugin new` scaffolds a project in Rust, Python or JavaScript;
//! `warren plugin test` checks a built plugin against the cases of a TOML file.

pub mod cases;
mod expect;
mod message;
pub mod new;
pub mod run;
mod templates;
