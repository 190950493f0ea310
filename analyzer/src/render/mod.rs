//! Renderers of a [`Report`](crate::report::Report): `text` for people,
//! `json` for tools. Both print the same data and write to any `io::Write`.
//! `verdict` prints the verdict of `memtrace check` (summary, JSON, JUnit,
//! memcheck XML);
//! `timeline` charts memory over time (SVG); `tree` lists a run's processes
//! at once (`memtrace report DIR`); `html` puts it all, flame graphs
//! included, in one self-contained page.

pub mod html;
pub mod json;
pub mod text;
pub mod timeline;
pub mod tree;
pub mod verdict;
