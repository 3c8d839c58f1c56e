//! The on-target cases, run on the host: the half of the host/target
//! comparison that the boards' build scripts compute, checked here as a test.
//!
//! - every case passes its own checks (bounds against `libm`, identities,
//!   typed errors) on the host and writes a non-empty stream;
//! - the stream is deterministic (two runs agree word for word) and a
//!   comparison against itself passes, against a changed copy fails at the
//!   changed word;
//! - every case is run by one of the on-target suites in `boards/suites/`.

use microformer_firmware::cases::ALL;
use microformer_firmware::{check, Failure, Out};

fn stream(case: &microformer_firmware::Case) -> Vec<u32> {
    let mut buf = vec![0u32; 1 << 16];
    let mut out = Out::record(&mut buf);
    if let Err(f) = (case.run)(&mut out) {
        panic!("{} fails on the host: {f:?}", case.name);
    }
    let words = out.recorded().to_vec();
    out.finish()
        .unwrap_or_else(|f| panic!("{}: {f:?}", case.name));
    words
}

#[test]
fn every_case_passes_on_the_host_and_is_deterministic() {
    let mut total = 0;
    for case in ALL {
        let a = stream(case);
        assert!(!a.is_empty(), "{} writes nothing", case.name);
        let b = stream(case);
        assert_eq!(a, b, "{} is not deterministic", case.name);
        assert_eq!(check(case, &a).map(|p| p.words as usize), Ok(a.len()));
        total += a.len();
    }
    assert!(total > 10_000, "only {total} words in all");
}

#[test]
fn a_changed_word_is_reported_where_it_changed() {
    for case in ALL {
        let mut a = stream(case);
        let at = a.len() / 2;
        a[at] ^= 1;
        match check(case, &a) {
            Err(Failure::Mismatch {
                word,
                differing,
                target,
                host,
                ..
            }) => {
                assert_eq!((word as usize, differing), (at, 1), "{}", case.name);
                assert_eq!(target ^ host, 1);
            }
            other => panic!("{}: {other:?}", case.name),
        }
        a.pop();
        a.pop();
        a[at] ^= 1;
        let short = a.len() as u32;
        assert_eq!(
            check(case, &a),
            Err(Failure::Length {
                target: short + 2,
                host: short
            }),
            "{}",
            case.name
        );
    }
}

#[test]
fn every_case_runs_on_target() {
    let suites = concat!(env!("CARGO_MANIFEST_DIR"), "/../suites");
    let mut text = String::new();
    for entry in std::fs::read_dir(suites).unwrap() {
        text += &std::fs::read_to_string(entry.unwrap().path()).unwrap();
    }
    for case in ALL {
        let call = format!("case!({})", case.name);
        assert_eq!(
            text.matches(&call).count(),
            1,
            "{call} must appear once in boards/suites/*.rs"
        );
    }
}

#[test]
fn names_are_unique() {
    let mut names: Vec<&str> = ALL.iter().map(|c| c.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), ALL.len());
}
