//! Events that cannot concern the registry are recognised without allocating: measured with
//! a counting global allocator over every datagram of the real recordings.

mod common;

use common::*;
use pciplug::Datagram;

#[test]
fn the_real_mix_is_mostly_ignored_and_ignoring_allocates_nothing() {
    let mut ignored = 0;
    let mut relevant = 0;
    for name in FIXTURES {
        let f = Fixture::load(name);
        for r in &f.recording.records {
            let mut parsed = None;
            let info = allocation_counter::measure(|| parsed = Some(Datagram::parse(&r.datagram)));
            match parsed.unwrap() {
                Ok(Datagram::Ignored(_)) => {
                    ignored += 1;
                    assert_eq!(
                        info.count_total, 0,
                        "{name} line {}: ignoring allocated",
                        r.line
                    );
                }
                Ok(Datagram::Relevant(_)) => {
                    relevant += 1;
                    assert!(info.count_total > 0, "the counter counts");
                }
                Err(e) => panic!("{name} line {}: {e}", r.line),
            }
        }
    }
    assert!(
        ignored > 2 * relevant,
        "{ignored} ignored, {relevant} relevant"
    );
}
