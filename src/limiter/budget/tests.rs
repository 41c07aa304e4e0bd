//! The budget's unit tests: bookings across dimensions and windows, refusals, cooldowns.

use super::*;
use crate::limiter::RollingWindow;

#[tokio::test(start_paused = true)]
async fn unlimited_budget_admits_at_once() {
    let budget = Budget::new();
    let r = budget
        .reserve(&Cost::requests(1), Some(Duration::ZERO))
        .unwrap();
    assert_eq!(r.ready_at(), Instant::now());
    assert_eq!(budget.outstanding(), 1);
    drop(r);
    assert_eq!(budget.outstanding(), 0);
}

#[tokio::test(start_paused = true)]
async fn dimensions_are_booked_for_the_slowest_instant() {
    let budget = Budget::new();
    budget.set_limit(Dimension::Requests, Some(Limit::per_second(10, 10)));
    budget.set_limit(Dimension::Tokens, Some(Limit::per_second(100, 100)));
    let cost = Cost::requests(1).with(Dimension::Tokens, 100);
    let first = budget.reserve(&cost, None).unwrap();
    let second = budget.reserve(&cost, None).unwrap();
    assert_eq!(second.ready_at() - first.ready_at(), Duration::from_secs(1));
    // The request dimension was booked for the instant the second request leaves (1 s), not
    // for now: its cell is booked up to 1.1 s, so with a 1 s tolerance a request-only cost
    // arriving now waits 200 ms instead of going at once.
    let request_only = budget.reserve(&Cost::requests(1), None).unwrap();
    assert_eq!(
        request_only.ready_at() - first.ready_at(),
        Duration::from_millis(200)
    );
    request_only.settle(None);
    first.settle(None);
    second.settle(None);
}

#[tokio::test(start_paused = true)]
async fn only_requests_are_spaced_as_sent() {
    let budget = Budget::new();
    budget.set_limit(
        Dimension::Tokens,
        Some(Limit {
            interval: Duration::from_millis(360),
            burst: 10_000,
        }),
    );
    let cost = Cost::requests(1).with(Dimension::Tokens, 6_000);
    let now = Instant::now();
    assert_eq!(budget.depart(&cost, now), Ok(()));
    // A second large request, once its tokens were booked (the first one's usage given
    // back), leaves at once: token units are not spaced again at departure.
    assert_eq!(budget.depart(&cost, now), Ok(()));
    budget.set_limit(
        Dimension::Requests,
        Some(Limit {
            interval: Duration::from_millis(20),
            burst: 1,
        }),
    );
    assert_eq!(budget.depart(&cost, now), Ok(()));
    // 20 ms and the guard as sent: 1 % of it.
    assert_eq!(
        budget.depart(&cost, now),
        Err(now + Duration::from_millis(20) + Duration::from_micros(200))
    );
}

#[tokio::test(start_paused = true)]
async fn refused_reservation_books_nothing() {
    let budget = Budget::new();
    budget.set_limit(Dimension::Requests, Some(Limit::per_second(1, 1)));
    let first = budget.reserve(&Cost::requests(1), None).unwrap();
    let blocked = budget
        .reserve(&Cost::requests(1), Some(Duration::from_millis(500)))
        .unwrap_err();
    assert_eq!(
        blocked,
        Blocked::Rate {
            dimension: Dimension::Requests,
            wait: Duration::from_secs(1)
        }
    );
    assert_eq!(budget.outstanding(), 1);
    first.settle(None);
    // Nothing was booked by the refused attempt: the next slot is still 1 s away.
    let next = budget.reserve(&Cost::requests(1), None).unwrap();
    assert_eq!(next.ready_at() - Instant::now(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn strict_dimension_refuses_what_never_fits() {
    let budget = Budget::new();
    budget.set_limit(Dimension::Tokens, Some(Limit::per_second(100, 1_000)));
    budget.set_strict(Dimension::Tokens, true);
    let blocked = budget
        .reserve(&Cost::requests(1).with(Dimension::Tokens, 1_001), None)
        .unwrap_err();
    assert_eq!(
        blocked,
        Blocked::NeverFits {
            dimension: Dimension::Tokens,
            cost: 1_001,
            burst: 1_000
        }
    );
    assert_eq!(blocked.wait(), None);
}

#[tokio::test(start_paused = true)]
async fn dimension_cooldown_spares_other_costs() {
    let budget = Budget::new();
    budget.cool_down(
        Some(Dimension::Tokens),
        Instant::now() + Duration::from_secs(60),
    );
    assert!(budget.cooldown_until(&Cost::requests(1)).is_none());
    assert!(budget
        .cooldown_until(&Cost::requests(1).with(Dimension::Tokens, 5))
        .is_some());
}

#[tokio::test(start_paused = true)]
async fn at_rest_only_when_nothing_is_booked_ahead() {
    let budget = Budget::new();
    budget.set_limit(Dimension::Requests, Some(Limit::per_second(1, 1)));
    assert!(budget.is_at_rest());
    budget
        .reserve(&Cost::requests(1), None)
        .unwrap()
        .settle(None);
    assert!(!budget.is_at_rest());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(budget.is_at_rest());
}

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3_600);

/// A request of one request and `tokens` tokens.
fn llm(tokens: u64) -> Cost {
    Cost::requests(1).with(Dimension::Tokens, tokens)
}

/// Every window of every dimension is booked for one instant, all or nothing, and a refusal
/// names the window that holds the cost back.
#[tokio::test(start_paused = true)]
async fn every_window_of_every_dimension_is_booked_together() {
    let budget = Budget::new();
    budget.set_limit(Dimension::Requests, Some(Limit::per_second(10, 10)));
    budget.set_windows(Dimension::Requests, &[RollingWindow::new(20, MINUTE)]);
    // A learned rate may allow more at once than a window ever does.
    budget.set_limit(Dimension::Tokens, Some(Limit::per_second(1_000, 5_000)));
    budget.set_windows(Dimension::Tokens, &[RollingWindow::new(3_000, HOUR)]);
    budget.set_strict(Dimension::Tokens, true);
    let start = Instant::now();
    let mut last = start;
    for _ in 0..20 {
        let booked = budget.reserve(&llm(100), None).unwrap();
        last = booked.ready_at();
        booked.settle(None);
    }
    // The first ten at once, then the rate: the minute's window is not what held them.
    assert_eq!(last - start, Duration::from_secs(1));
    tokio::time::sleep_until(last).await;
    assert_eq!(budget.window_available(Dimension::Requests), Some(0));
    assert_eq!(budget.window_available(Dimension::Tokens), Some(1_000));

    // The request window is spent for about a minute: refused, named, and nothing booked.
    let refused = budget.reserve(&llm(100), Some(Duration::from_secs(10)));
    let Err(Blocked::Window {
        dimension: Dimension::Requests,
        window,
        wait,
    }) = refused
    else {
        panic!("{refused:?}");
    };
    assert_eq!(window, RollingWindow::new(20, MINUTE));
    assert!(
        wait >= Duration::from_secs(59) && wait <= MINUTE + MINUTE / 128,
        "{wait:?}"
    );
    // Tokens alone: the hour's window decides, and a cost above its quota never fits.
    let tokens_only = Cost::zero().with(Dimension::Tokens, 1_500);
    assert!(matches!(
        budget.reserve(&tokens_only, Some(Duration::from_secs(10))),
        Err(Blocked::Window {
            dimension: Dimension::Tokens,
            ..
        })
    ));
    let too_large = Cost::zero().with(Dimension::Tokens, 3_001);
    assert_eq!(
        budget.reserve(&too_large, None).unwrap_err(),
        Blocked::NeverFits {
            dimension: Dimension::Tokens,
            cost: 3_001,
            burst: 3_000
        }
    );
    assert_eq!(budget.window_available(Dimension::Tokens), Some(1_000));
    assert_eq!(budget.outstanding(), 0);

    // Waited for, the booking leaves when the minute's window has room, and takes its tokens
    // for that instant in the hour's.
    let waiting = budget.reserve(&llm(400), None).unwrap();
    assert!(waiting.ready_at() - start >= MINUTE);
    tokio::time::sleep_until(waiting.ready_at()).await;
    waiting.settle(None);
    assert_eq!(budget.window_available(Dimension::Tokens), Some(600));
}

/// A waiter dropped gives its window units back, and the one behind it moves up into them.
#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_gives_its_window_back() {
    let budget = Budget::new();
    budget.set_windows(Dimension::Requests, &[RollingWindow::new(1, MINUTE)]);
    budget
        .reserve(&Cost::requests(1), None)
        .unwrap()
        .settle(None);
    let second = budget.reserve(&Cost::requests(1), None).unwrap();
    let third = budget.reserve(&Cost::requests(1), None).unwrap();
    let (second_at, third_at) = (second.ready_at(), third.ready_at());
    assert!(second_at >= Instant::now() + MINUTE);
    assert!(third_at >= second_at + MINUTE);
    drop(second);
    assert_eq!(third.ready_at(), second_at);
    drop(third);
    // Nothing left behind: the next booking goes where the second would have.
    let next = budget.reserve(&Cost::requests(1), None).unwrap();
    assert_eq!(next.ready_at(), second_at);
}

/// Settlement brings every window to what the request used: an over-estimate comes back at
/// once (whatever was booked since), an under-estimate is charged and the waiters behind it
/// book again.
#[tokio::test(start_paused = true)]
async fn settlement_reaches_the_windows() {
    let budget = Budget::new();
    budget.set_limit(Dimension::Requests, Some(Limit::per_second(1, 1)));
    budget.set_windows(Dimension::Tokens, &[RollingWindow::new(1_000, HOUR)]);
    let start = Instant::now();
    let over = budget.reserve(&llm(600), None).unwrap().commit();
    let later = budget.reserve(&llm(300), None).unwrap();
    tokio::time::sleep_until(later.ready_at()).await;
    let later = later.commit();
    budget.settle(over, &llm(200));
    assert_eq!(budget.window_available(Dimension::Tokens), Some(500));
    // Two more, at 2 s and 3 s, within the hour's room as estimated.
    let under = budget.reserve(&llm(100), None).unwrap();
    let waiter = budget.reserve(&llm(300), None).unwrap();
    assert_eq!(waiter.ready_at(), start + Duration::from_secs(3));
    budget.settle(under.commit(), &llm(450));
    // 200 + 300 + 450 = 950 counted: the waiter's 300 fit only once the first leave the hour.
    assert!(
        waiter.ready_at() >= start + HOUR,
        "{:?}",
        waiter.ready_at() - start
    );
    drop(waiter);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(budget.window_available(Dimension::Tokens), Some(50));
    budget.settle(later, &llm(300));
}

/// The server's count acts on the rate, never on a longer window.
#[tokio::test(start_paused = true)]
async fn a_servers_count_leaves_the_windows_alone() {
    let budget = Budget::new();
    budget.set_limit(Dimension::Requests, Some(Limit::per_second(1, 10)));
    budget.set_windows(Dimension::Requests, &[RollingWindow::new(100, HOUR)]);
    for _ in 0..5 {
        budget
            .reserve(&Cost::requests(1), None)
            .unwrap()
            .settle(None);
    }
    budget.sync(Dimension::Requests, 10, 1);
    assert_eq!(budget.available(Dimension::Requests), Some(10));
    assert_eq!(budget.window_available(Dimension::Requests), Some(95));
    assert!(!budget.is_at_rest());
    tokio::time::advance(HOUR + HOUR / 128).await;
    assert!(budget.is_at_rest());
}
