//! The correlator decides as upstream's client-go `EventCorrelator` does.

use super::*;

fn recorded(name: &str, type_: &'static str, reason: &'static str, message: &str) -> Recorded {
    Recorded {
        object: ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some("ReplicaSet".into()),
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        type_,
        reason: reason.into(),
        message: message.into(),
    }
}

/// Correlates `r` at `now` and, when it is created, remembers it as the writer does.
fn step(c: &mut Correlator, r: &Recorded, now: Instant) -> Option<Write> {
    let (write, key) = c.correlate(r, now);
    if let Some(Write::Create { .. }) = write {
        c.created(key, "ns".into(), format!("ev{}", c.written.len()));
    }
    write
}

#[test]
fn a_repeated_event_bumps_the_count_of_the_one_written() {
    let mut c = Correlator::default();
    let t = Instant::now();
    let r = recorded("rs", NORMAL, "BackOff", "back-off restarting");
    assert_eq!(
        step(&mut c, &r, t),
        Some(Write::Create {
            message: "back-off restarting".into()
        })
    );
    for count in 2..=4 {
        assert_eq!(
            step(&mut c, &r, t),
            Some(Write::Bump {
                namespace: "ns".into(),
                name: "ev0".into(),
                count,
                message: "back-off restarting".into()
            })
        );
    }
}

#[test]
fn the_tenth_distinct_message_of_a_reason_is_combined_and_later_ones_bump_it() {
    let mut c = Correlator::default();
    let t = Instant::now();
    let r = |i: usize| {
        recorded(
            "rs",
            NORMAL,
            "SuccessfulCreate",
            &format!("Created pod: p{i}"),
        )
    };
    for i in 1..=9 {
        assert_eq!(
            step(&mut c, &r(i), t),
            Some(Write::Create {
                message: format!("Created pod: p{i}")
            })
        );
    }
    assert_eq!(
        step(&mut c, &r(10), t),
        Some(Write::Create {
            message: "(combined from similar events): Created pod: p10".into()
        })
    );
    assert_eq!(
        step(&mut c, &r(11), t),
        Some(Write::Bump {
            namespace: "ns".into(),
            name: "ev9".into(),
            count: 2,
            message: "(combined from similar events): Created pod: p11".into()
        })
    );
    // Another reason of the same object is counted apart.
    assert_eq!(
        step(
            &mut c,
            &recorded("rs", NORMAL, "SuccessfulDelete", "Deleted pod: p1"),
            t
        ),
        Some(Write::Create {
            message: "Deleted pod: p1".into()
        })
    );
    // Ten minutes later the messages are counted afresh.
    let later = t + AGGREGATE_WINDOW + Duration::from_secs(1);
    assert_eq!(
        step(&mut c, &r(12), later),
        Some(Write::Create {
            message: "Created pod: p12".into()
        })
    );
}

#[test]
fn an_object_gets_25_writes_of_a_type_at_once_then_one_per_five_minutes() {
    let mut c = Correlator::default();
    let t = Instant::now();
    let reasons = ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J"];
    // Distinct reasons and messages: nothing is combined or bumped, so only the filter
    // decides.
    let r = |i: usize| recorded("rs", NORMAL, reasons[i % 10], &format!("m{}", i / 10));
    let allowed = (0..30)
        .filter(|i| step(&mut c, &r(*i), t).is_some())
        .count();
    assert_eq!(allowed, 25);
    // Warnings about the same object, and another object, have buckets of their own.
    assert!(step(&mut c, &recorded("rs", WARNING, "FailedCreate", "x"), t).is_some());
    assert!(step(&mut c, &recorded("other", NORMAL, "A", "x"), t).is_some());
    // The bucket refills at one write per 5 minutes.
    let t = t + Duration::from_secs(299);
    assert!(step(&mut c, &r(30), t).is_none());
    let t = t + Duration::from_secs(2);
    assert!(step(&mut c, &r(31), t).is_some());
    assert!(step(&mut c, &r(32), t).is_none());
}
