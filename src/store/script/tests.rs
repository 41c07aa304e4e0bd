//! The scripts' arguments and replies, and the rules they share with the lane, without Redis.

use super::*;

fn requests_per_second(rate: u32, burst: u64) -> Shapes {
    let mut shapes: Shapes = [None; DIMENSIONS];
    shapes[0] = Some(Shape {
        limit: Limit {
            interval: Duration::from_secs(1) / rate,
            burst,
        },
        strict: false,
    });
    shapes
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

#[test]
fn micros_are_exact_to_the_nanosecond() {
    assert_eq!(micros(Duration::from_nanos(333_333_333)), "333333.333");
    assert_eq!(micros(Duration::ZERO), "0.000");
}

#[test]
fn booking_arguments_name_every_dimension() {
    let cost = Cost::requests(1).with(Dimension::Tokens, 7);
    let args = book_args(&cost, &requests_per_second(10, 2), None, None, None);
    assert_eq!(args.len(), 18);
    let guard = Some(Duration::from_micros(300));
    let guarded = book_args(&cost, &requests_per_second(10, 2), None, None, guard);
    assert_eq!(&guarded[18..], &strings(&["0.02", "1000.000", "300.000"]));
    assert_eq!(&args[..6], &strings(&["", "", "1", "100000.000", "2", "0"]));
    // Tokens cost 7 but have no limit here: sent with no interval.
    assert_eq!(&args[6..10], &strings(&["7", "", "", ""]));
}

#[test]
fn a_granted_booking_keeps_its_grant_as_written() {
    let mut reply = strings(&["ok", "1500.5", "3", "100", "100100", "", "100000", "2"]);
    // Tokens limited but not booked; the other two dimensions unlimited.
    reply.extend(strings(&["", "", "", "", "1000", "60000"]));
    reply.extend(std::iter::repeat_n(String::new(), 12));
    reply.push("50".to_owned());
    let Booked::Granted {
        wait,
        grants,
        ahead,
        ..
    } = parse_booked(&reply).unwrap()
    else {
        panic!("not granted");
    };
    assert_eq!(wait, Duration::from_nanos(1_500_500));
    // The cell is booked 100 050 µs past the script's now.
    assert_eq!(ahead[0], Some(Duration::from_micros(100_050)));
    let grant = grants[0].as_ref().unwrap();
    assert_eq!((grant.seq.as_str(), grant.end.as_str()), ("3", "100100"));
    assert_eq!((grant.interval_us, grant.burst), (100_000.0, 2));
    // A limited dimension the cost did not touch: no booking number, but its limit, for a
    // settlement that charges it.
    let tokens = grants[1].as_ref().unwrap();
    assert_eq!((tokens.seq.as_str(), tokens.burst), ("", 60_000));
    assert_eq!(ahead[1], None);
    assert!(grants[2..].iter().all(Option::is_none));
}

#[test]
fn refusals_and_garbage_are_told_apart() {
    assert_eq!(
        parse_booked(&strings(&["wait", "-1", "2000000"])).unwrap(),
        Booked::TooLong {
            dimension: None,
            wait: Duration::from_secs(2)
        }
    );
    assert_eq!(
        parse_booked(&strings(&["never", "1", "1000"])).unwrap(),
        Booked::NeverFits {
            dimension: Dimension::Tokens,
            burst: 1_000
        }
    );
    for garbage in [
        strings(&[]),
        strings(&["ok"]),
        strings(&["ok", "-5"]),
        strings(&["ok", "NaN"]),
        strings(&["wait", "9", "1"]),
        strings(&["maybe"]),
    ] {
        assert!(parse_booked(&garbage).is_err(), "{garbage:?}");
    }
}

#[test]
fn settlement_refunds_over_and_debits_under_estimates_up_to_a_burst() {
    let grant = SharedGrant {
        seq: "1".into(),
        start: "0".into(),
        end: "600".into(),
        previous: String::new(),
        interval_us: 1.0,
        burst: 1_000,
    };
    let grants: SharedGrants = [None, Some(grant), None, None];
    let booked = Cost::requests(1).with(Dimension::Tokens, 600);
    let args = |actual: u64| {
        let actual = Cost::requests(1).with(Dimension::Tokens, actual);
        settle_args(&grants, &booked, &actual, Reconcile::Settle, None)
    };
    assert_eq!(args(200)[7], "refund");
    assert_eq!(args(200)[12], "400.000");
    assert_eq!(args(900)[7], "debit");
    assert_eq!(args(900)[12], "300.000");
    // A report beyond one burst is charged up to the burst only.
    assert_eq!(args(u64::MAX)[12], "400.000");
    assert_eq!(args(600)[7], "");
    let cancel = settle_args(&grants, &booked, &Cost::zero(), Reconcile::Cancel, None);
    assert_eq!(cancel[7], "cancel");
    // What the metrics are told was charged follows the same rule.
    let charged = |actual: u64| {
        settled(
            &grants,
            &booked,
            &Cost::requests(1).with(Dimension::Tokens, actual),
        )
    };
    assert_eq!(charged(900).charged.get(Dimension::Tokens), 900);
    assert!(!charged(900).clamped);
    assert_eq!(charged(u64::MAX).charged.get(Dimension::Tokens), 1_000);
    assert!(charged(u64::MAX).clamped);
}

#[test]
fn the_fleets_curve_reads_back_or_not_at_all() {
    let curve = FleetCubic {
        seq: 3,
        last_max: 100.0,
        beta: 0.7,
        since_us: 1000.5,
        after_us: 2000.0,
        stretch: None,
    };
    // As an older version wrote it, and with the stretch its share made.
    assert_eq!(FleetCubic::parse("3,100,0.7,1000.5,2000"), Some(curve));
    assert_eq!(
        FleetCubic::parse("3,100,0.7,1000.5,2000,2500,1.5"),
        Some(FleetCubic {
            stretch: Some(Stretch {
                at_us: 2500.0,
                factor: 1.5
            }),
            ..curve
        })
    );
    // A share that stretched nothing.
    assert_eq!(
        FleetCubic::parse("3,100,0.7,1000.5,2000,2500,1"),
        Some(curve)
    );
    for garbage in [
        "",
        "3,100,0.7,1",
        "3,100,0.7,1,2,3",
        "3,100,0.7,1,2,3,0.5",
        "3,100,0.7,1,2,3,NaN",
        "3,100,0.7,1,2,3,4,5",
        "x,1,1,1,1",
        "3,NaN,1,1,1",
        "3,inf,1,1,1",
    ] {
        assert_eq!(FleetCubic::parse(garbage), None, "{garbage}");
    }
    assert_eq!(
        parse_shared(&["7".into(), "2500".into(), "1.5".into()]),
        Ok(Some((
            7,
            Stretch {
                at_us: 2500.0,
                factor: 1.5
            }
        )))
    );
    assert_eq!(parse_shared(&["stale".into()]), Ok(None));
    assert_eq!(parse_shared(&["7".into(), "2500".into()]), Err(()));
    assert_eq!(
        parse_shared(&["7".into(), "2500".into(), "0.5".into()]),
        Err(())
    );
}

#[test]
fn a_fill_names_only_the_dimensions_booked_ahead() {
    let args = fill_args(&[Some(Duration::from_millis(160)), None, None, None]);
    assert_eq!(args.len(), 25);
    assert_eq!(args[1], "fill");
    assert_eq!(args[6], "160000.000");
    assert!(args[7..].iter().all(String::is_empty));
}
