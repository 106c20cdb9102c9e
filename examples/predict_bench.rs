//! The prediction benchmark: a million synthetic customers, fitted and
//! scored, with the time of each step.
//!
//! ```text
//! cargo run --release --example predict_bench [-- CUSTOMERS [--continuous]]
//! ```
//!
//! By default times are whole days, as a clinic records visits, so many
//! customers share a summary; `--continuous` keeps fractional times, the
//! worst case for the fit (every summary distinct).

use recall::predict::bench::{self, BenchConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = BenchConfig::default();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--continuous" => config.data.whole_days = false,
            n => config.data.customers = n.replace('_', "").parse()?,
        }
    }
    let report = bench::run(&config)?;
    print!("{report}");
    Ok(())
}
