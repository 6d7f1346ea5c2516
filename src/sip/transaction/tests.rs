use super::*;
use crate::sip::timer::{TimerId, TimerQueue};
use std::collections::HashMap;
use std::time::Instant;

/// Simulated clock: virtual time, one `TimerQueue` like the real actor, and a log of what the
/// machine asked for.
struct Sim {
    base: Instant,
    now: Duration,
    queue: TimerQueue<Timer>,
    armed: HashMap<Timer, TimerId>,
    /// (virtual ms, bytes) of every Send.
    sent: Vec<(u64, Bytes)>,
    /// (virtual ms, action) of every DeliverResponse, Timeout and Terminated.
    events: Vec<(u64, Action)>,
}

impl Sim {
    fn new() -> Self {
        Sim {
            base: Instant::now(),
            now: Duration::ZERO,
            queue: TimerQueue::new(),
            armed: HashMap::new(),
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    fn ms(&self) -> u64 {
        u64::try_from(self.now.as_millis()).unwrap_or(u64::MAX)
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send(bytes) => self.sent.push((self.ms(), bytes)),
                Action::Schedule(timer, delay) => {
                    if let Some(old) = self.armed.remove(&timer) {
                        self.queue.cancel(old);
                    }
                    let id = self.queue.schedule(self.base + self.now + delay, timer);
                    self.armed.insert(timer, id);
                }
                Action::Cancel(timer) => {
                    if let Some(id) = self.armed.remove(&timer) {
                        self.queue.cancel(id);
                    }
                }
                Action::Terminated => {
                    for (_, id) in self.armed.drain() {
                        self.queue.cancel(id);
                    }
                    self.events.push((self.ms(), Action::Terminated));
                }
                other => self.events.push((self.ms(), other)),
            }
        }
    }

    /// Fires every timer due up to virtual `until_ms`, feeding it to `on_timer`.
    fn run_until(&mut self, until_ms: u64, mut on_timer: impl FnMut(Timer) -> Vec<Action>) {
        let limit = self.base + Duration::from_millis(until_ms);
        while let Some(at) = self.queue.next_deadline() {
            if at > limit {
                break;
            }
            self.now = at - self.base;
            for (id, timer) in self.queue.pop_due(at) {
                if self.armed.get(&timer) != Some(&id) {
                    continue;
                }
                self.armed.remove(&timer);
                let actions = on_timer(timer);
                self.apply(actions);
            }
        }
        self.now = Duration::from_millis(until_ms);
    }

    fn send_times(&self) -> Vec<u64> {
        self.sent.iter().map(|(t, _)| *t).collect()
    }
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

const UDP: Reliability = Reliability::Unreliable;
const TCP: Reliability = Reliability::Reliable;

fn timers() -> Timers {
    Timers::default()
}

#[test]
fn default_timers_are_table_4() {
    let t = Timers::default();
    assert_eq!(t.t1, Duration::from_millis(500));
    assert_eq!(t.t2, Duration::from_secs(4));
    assert_eq!(t.t4, Duration::from_secs(5));
    assert_eq!(t.sixty_four_t1(), Duration::from_secs(32));
}

// ---- client non-INVITE (Figure 6) ----

#[test]
fn client_non_invite_udp_without_answer_retransmits_capped_at_t2_and_times_out() {
    let mut sim = Sim::new();
    let (mut tx, first) = ClientNonInvite::start(UDP, timers(), b("REGISTER"));
    assert_eq!(
        first,
        vec![
            Action::Send(b("REGISTER")),
            Action::Schedule(Timer::E, Duration::from_millis(500)),
            Action::Schedule(Timer::F, Duration::from_secs(32)),
        ]
    );
    sim.apply(first);
    sim.run_until(60_000, |t| tx.on_timer(t));
    assert_eq!(
        sim.send_times(),
        vec![0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert!(sim.sent.iter().all(|(_, m)| m == &b("REGISTER")));
    assert_eq!(
        sim.events,
        vec![(32_000, Action::Timeout), (32_000, Action::Terminated)]
    );
    assert_eq!(tx.state(), State::Terminated);
    assert!(sim.queue.is_empty());
}

#[test]
fn client_non_invite_tcp_without_answer_sends_once_and_times_out() {
    let mut sim = Sim::new();
    let (mut tx, first) = ClientNonInvite::start(TCP, timers(), b("OPTIONS"));
    assert_eq!(
        first,
        vec![
            Action::Send(b("OPTIONS")),
            Action::Schedule(Timer::F, Duration::from_secs(32)),
        ]
    );
    sim.apply(first);
    sim.run_until(60_000, |t| tx.on_timer(t));
    assert_eq!(sim.send_times(), vec![0]);
    assert_eq!(
        sim.events,
        vec![(32_000, Action::Timeout), (32_000, Action::Terminated)]
    );
}

#[test]
fn client_non_invite_provisional_switches_e_to_t2_then_final_completes() {
    let mut sim = Sim::new();
    let (mut tx, first) = ClientNonInvite::start(UDP, timers(), b("SUBSCRIBE"));
    sim.apply(first);
    sim.run_until(600, |t| tx.on_timer(t));
    assert_eq!(sim.send_times(), vec![0, 500]);

    // A 1xx at 600 ms: delivered, and E keeps its deadline (1500) but is then reset to T2.
    let actions = tx.on_response(100);
    assert_eq!(actions, vec![Action::DeliverResponse(100)]);
    sim.apply(actions);
    assert_eq!(tx.state(), State::Proceeding);
    sim.run_until(10_000, |t| tx.on_timer(t));
    assert_eq!(sim.send_times(), vec![0, 500, 1500, 5500, 9500]);

    // The 200 at 10 s: delivered once, E and F cancelled, Timer K = T4.
    let actions = tx.on_response(200);
    assert_eq!(
        actions,
        vec![
            Action::DeliverResponse(200),
            Action::Cancel(Timer::E),
            Action::Cancel(Timer::F),
            Action::Schedule(Timer::K, Duration::from_secs(5)),
        ]
    );
    sim.apply(actions);
    assert_eq!(tx.state(), State::Completed);

    // A retransmitted 200 (and a late 1xx) in Completed are absorbed.
    sim.run_until(12_000, |t| tx.on_timer(t));
    assert_eq!(tx.on_response(200), vec![]);
    assert_eq!(tx.on_response(180), vec![]);
    sim.run_until(14_999, |t| tx.on_timer(t));
    assert_eq!(tx.state(), State::Completed);
    sim.run_until(60_000, |t| tx.on_timer(t));
    assert_eq!(sim.send_times(), vec![0, 500, 1500, 5500, 9500]);
    assert_eq!(
        sim.events,
        vec![
            (600, Action::DeliverResponse(100)),
            (10_000, Action::DeliverResponse(200)),
            (15_000, Action::Terminated),
        ]
    );
}

#[test]
fn client_non_invite_tcp_final_terminates_at_once() {
    let (mut tx, _) = ClientNonInvite::start(TCP, timers(), b("MESSAGE"));
    assert_eq!(
        tx.on_response(404),
        vec![
            Action::DeliverResponse(404),
            Action::Cancel(Timer::F),
            Action::Terminated,
        ]
    );
    assert_eq!(tx.state(), State::Terminated);
    assert_eq!(tx.on_response(404), vec![]);
}

#[test]
fn client_non_invite_ignores_invalid_status_and_stale_timers() {
    let (mut tx, _) = ClientNonInvite::start(UDP, timers(), b("OPTIONS"));
    for status in [0, 99, 700, u16::MAX] {
        assert_eq!(tx.on_response(status), vec![]);
    }
    assert_eq!(tx.on_timer(Timer::K), vec![]);
    assert_eq!(tx.on_timer(Timer::A), vec![]);
    assert_eq!(tx.state(), State::Trying);
}

#[test]
fn client_non_invite_transport_error() {
    let (mut tx, _) = ClientNonInvite::start(UDP, timers(), b("OPTIONS"));
    assert_eq!(
        tx.on_transport_error(),
        vec![Action::Timeout, Action::Terminated]
    );
    assert_eq!(tx.state(), State::Terminated);
    assert_eq!(tx.on_transport_error(), vec![]);

    let (mut tx, _) = ClientNonInvite::start(UDP, timers(), b("OPTIONS"));
    tx.on_response(200);
    assert_eq!(tx.on_transport_error(), vec![]);
    assert_eq!(tx.state(), State::Completed);
}

// ---- server non-INVITE (Figure 8) ----

#[test]
fn server_non_invite_udp_answers_retransmissions_and_lingers_64_t1() {
    let mut sim = Sim::new();
    let mut tx = ServerNonInvite::new(UDP, timers());
    assert_eq!(tx.state(), State::Trying);
    // Before any response: retransmissions are discarded.
    assert_eq!(tx.on_request_retransmission(), vec![]);

    let actions = tx.respond(200, b("200 OK"));
    assert_eq!(
        actions,
        vec![
            Action::Send(b("200 OK")),
            Action::Schedule(Timer::J, Duration::from_secs(32)),
        ]
    );
    sim.apply(actions);
    assert_eq!(tx.state(), State::Completed);

    sim.run_until(1_000, |t| tx.on_timer(t));
    let actions = tx.on_request_retransmission();
    assert_eq!(actions, vec![Action::Send(b("200 OK"))]);
    sim.apply(actions);
    // A second final response from the TU is discarded.
    assert_eq!(tx.respond(500, b("500")), vec![]);

    sim.run_until(31_999, |t| tx.on_timer(t));
    assert_eq!(tx.state(), State::Completed);
    sim.run_until(60_000, |t| tx.on_timer(t));
    assert_eq!(sim.send_times(), vec![0, 1_000]);
    assert_eq!(sim.events, vec![(32_000, Action::Terminated)]);
    assert_eq!(tx.on_request_retransmission(), vec![]);
}

#[test]
fn server_non_invite_provisional_is_resent_in_proceeding() {
    let mut tx = ServerNonInvite::new(UDP, timers());
    assert_eq!(tx.respond(100, b("100")), vec![Action::Send(b("100"))]);
    assert_eq!(tx.state(), State::Proceeding);
    assert_eq!(tx.on_request_retransmission(), vec![Action::Send(b("100"))]);
    assert_eq!(tx.respond(183, b("183")), vec![Action::Send(b("183"))]);
    assert_eq!(tx.on_request_retransmission(), vec![Action::Send(b("183"))]);
}

#[test]
fn server_non_invite_tcp_terminates_on_final_response() {
    let mut tx = ServerNonInvite::new(TCP, timers());
    assert_eq!(
        tx.respond(202, b("202")),
        vec![Action::Send(b("202")), Action::Terminated]
    );
    assert_eq!(tx.state(), State::Terminated);
    assert_eq!(tx.on_request_retransmission(), vec![]);
}

#[test]
fn server_non_invite_ignores_invalid_status_and_reports_transport_errors() {
    let mut tx = ServerNonInvite::new(UDP, timers());
    assert_eq!(tx.respond(99, b("bad")), vec![]);
    assert_eq!(tx.respond(700, b("bad")), vec![]);
    assert_eq!(tx.state(), State::Trying);
    // Nothing was sent yet: a transport error cannot concern this transaction.
    assert_eq!(tx.on_transport_error(), vec![]);
    tx.respond(100, b("100"));
    assert_eq!(
        tx.on_transport_error(),
        vec![Action::Timeout, Action::Terminated]
    );
    assert_eq!(tx.state(), State::Terminated);
}

// ---- server INVITE (Figure 7) ----

#[test]
fn server_invite_486_udp_retransmits_until_ack_then_confirmed() {
    let mut sim = Sim::new();
    let mut tx = ServerInvite::new(UDP, timers());
    assert_eq!(tx.state(), State::Proceeding);
    // No response yet: nothing to repeat.
    assert_eq!(tx.on_request_retransmission(), vec![]);
    assert_eq!(tx.on_ack(), vec![]);
    let actions = tx.respond(100, b("100 Trying"));
    assert_eq!(actions, vec![Action::Send(b("100 Trying"))]);
    assert_eq!(
        tx.on_request_retransmission(),
        vec![Action::Send(b("100 Trying"))]
    );

    let actions = tx.respond(486, b("486 Busy Here"));
    assert_eq!(
        actions,
        vec![
            Action::Send(b("486 Busy Here")),
            Action::Schedule(Timer::G, Duration::from_millis(500)),
            Action::Schedule(Timer::H, Duration::from_secs(32)),
        ]
    );
    sim.apply(actions);
    assert_eq!(tx.state(), State::Completed);
    sim.run_until(9_000, |t| tx.on_timer(t));
    assert_eq!(sim.send_times(), vec![0, 500, 1500, 3500, 7500]);
    assert!(sim.sent.iter().all(|(_, m)| m == &b("486 Busy Here")));

    let actions = tx.on_ack();
    assert_eq!(
        actions,
        vec![
            Action::Cancel(Timer::G),
            Action::Cancel(Timer::H),
            Action::Schedule(Timer::I, Duration::from_secs(5)),
        ]
    );
    sim.apply(actions);
    assert_eq!(tx.state(), State::Confirmed);
    // Later ACKs and INVITE retransmissions are absorbed.
    assert_eq!(tx.on_ack(), vec![]);
    assert_eq!(tx.on_request_retransmission(), vec![]);
    sim.run_until(13_999, |t| tx.on_timer(t));
    assert_eq!(tx.state(), State::Confirmed);
    sim.run_until(60_000, |t| tx.on_timer(t));
    assert_eq!(sim.send_times(), vec![0, 500, 1500, 3500, 7500]);
    assert_eq!(sim.events, vec![(14_000, Action::Terminated)]);
}

#[test]
fn server_invite_without_ack_times_out_at_64_t1() {
    let mut sim = Sim::new();
    let mut tx = ServerInvite::new(UDP, timers());
    sim.apply(tx.respond(486, b("486")));
    sim.run_until(60_000, |t| tx.on_timer(t));
    assert_eq!(
        sim.send_times(),
        vec![0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(
        sim.events,
        vec![(32_000, Action::Timeout), (32_000, Action::Terminated)]
    );
    assert_eq!(tx.state(), State::Terminated);
}

#[test]
fn server_invite_retransmitted_invite_in_completed_gets_the_final_response() {
    let mut tx = ServerInvite::new(UDP, timers());
    tx.respond(180, b("180"));
    tx.respond(603, b("603"));
    assert_eq!(tx.on_request_retransmission(), vec![Action::Send(b("603"))]);
    // The TU cannot change its mind once Completed.
    assert_eq!(tx.respond(200, b("200")), vec![]);
}

#[test]
fn server_invite_2xx_terminates_the_transaction() {
    let mut tx = ServerInvite::new(UDP, timers());
    assert_eq!(
        tx.respond(200, b("200 OK")),
        vec![Action::Send(b("200 OK")), Action::Terminated]
    );
    assert_eq!(tx.state(), State::Terminated);
    assert_eq!(tx.on_request_retransmission(), vec![]);
    assert_eq!(tx.on_ack(), vec![]);
}

#[test]
fn server_invite_tcp_has_no_g_and_no_i() {
    let mut tx = ServerInvite::new(TCP, timers());
    assert_eq!(
        tx.respond(404, b("404")),
        vec![
            Action::Send(b("404")),
            Action::Schedule(Timer::H, Duration::from_secs(32)),
        ]
    );
    assert_eq!(tx.on_timer(Timer::G), vec![]);
    assert_eq!(
        tx.on_ack(),
        vec![Action::Cancel(Timer::H), Action::Terminated]
    );
    assert_eq!(tx.state(), State::Terminated);
}

#[test]
fn server_invite_transport_error() {
    let mut tx = ServerInvite::new(UDP, timers());
    tx.respond(486, b("486"));
    assert_eq!(
        tx.on_transport_error(),
        vec![Action::Timeout, Action::Terminated]
    );
    let mut tx = ServerInvite::new(UDP, timers());
    tx.respond(486, b("486"));
    tx.on_ack();
    assert_eq!(tx.on_transport_error(), vec![]);
    assert_eq!(tx.state(), State::Confirmed);
}

// ---- client INVITE (Figure 5) ----

#[test]
fn client_invite_udp_without_answer_doubles_a_and_times_out_on_b() {
    let mut sim = Sim::new();
    let (mut tx, first) = ClientInvite::start(UDP, timers(), b("INVITE"));
    assert_eq!(
        first,
        vec![
            Action::Send(b("INVITE")),
            Action::Schedule(Timer::A, Duration::from_millis(500)),
            Action::Schedule(Timer::B, Duration::from_secs(32)),
        ]
    );
    sim.apply(first);
    sim.run_until(60_000, |t| tx.on_timer(t));
    assert_eq!(
        sim.send_times(),
        vec![0, 500, 1500, 3500, 7500, 15500, 31500]
    );
    assert_eq!(
        sim.events,
        vec![(32_000, Action::Timeout), (32_000, Action::Terminated)]
    );
}

#[test]
fn client_invite_1xx_stops_a_then_404_is_acked_and_re_acked() {
    let mut sim = Sim::new();
    let (mut tx, first) = ClientInvite::start(UDP, timers(), b("INVITE"));
    sim.apply(first);
    sim.run_until(600, |t| tx.on_timer(t));
    assert_eq!(sim.send_times(), vec![0, 500]);

    let actions = tx.on_response(180, Some(b("ignored")));
    assert_eq!(
        actions,
        vec![
            Action::DeliverResponse(180),
            Action::Cancel(Timer::A),
            Action::Cancel(Timer::B),
        ]
    );
    sim.apply(actions);
    assert_eq!(tx.state(), State::Proceeding);
    // No more retransmissions and no Timer B timeout while ringing.
    sim.run_until(60_000, |t| tx.on_timer(t));
    assert_eq!(sim.send_times(), vec![0, 500]);
    assert_eq!(
        tx.on_response(183, None),
        vec![Action::DeliverResponse(183)]
    );

    let actions = tx.on_response(404, Some(b("ACK")));
    assert_eq!(
        actions,
        vec![
            Action::DeliverResponse(404),
            Action::Send(b("ACK")),
            Action::Schedule(Timer::D, Duration::from_secs(32)),
        ]
    );
    sim.apply(actions);
    assert_eq!(tx.state(), State::Completed);

    sim.run_until(61_000, |t| tx.on_timer(t));
    let actions = tx.on_response(404, None);
    assert_eq!(actions, vec![Action::Send(b("ACK"))]);
    sim.apply(actions);
    // Provisionals and 2xx in Completed are absorbed.
    assert_eq!(tx.on_response(180, None), vec![]);
    assert_eq!(tx.on_response(200, None), vec![]);

    sim.run_until(91_999, |t| tx.on_timer(t));
    assert_eq!(tx.state(), State::Completed);
    sim.run_until(200_000, |t| tx.on_timer(t));
    assert_eq!(
        sim.sent,
        vec![
            (0, b("INVITE")),
            (500, b("INVITE")),
            (60_000, b("ACK")),
            (61_000, b("ACK")),
        ]
    );
    assert_eq!(
        sim.events,
        vec![
            (600, Action::DeliverResponse(180)),
            (60_000, Action::DeliverResponse(404)),
            (92_000, Action::Terminated),
        ]
    );
}

#[test]
fn client_invite_2xx_terminates_after_delivery() {
    let (mut tx, _) = ClientInvite::start(UDP, timers(), b("INVITE"));
    assert_eq!(
        tx.on_response(200, Some(b("ACK"))),
        vec![
            Action::DeliverResponse(200),
            Action::Cancel(Timer::A),
            Action::Cancel(Timer::B),
            Action::Terminated,
        ]
    );
    assert_eq!(tx.state(), State::Terminated);
    // 2xx retransmissions no longer reach this transaction.
    assert_eq!(tx.on_response(200, None), vec![]);
}

#[test]
fn client_invite_tcp_failure_acks_and_terminates_at_once() {
    let (mut tx, first) = ClientInvite::start(TCP, timers(), b("INVITE"));
    assert_eq!(
        first,
        vec![
            Action::Send(b("INVITE")),
            Action::Schedule(Timer::B, Duration::from_secs(32)),
        ]
    );
    assert_eq!(
        tx.on_response(486, Some(b("ACK"))),
        vec![
            Action::DeliverResponse(486),
            Action::Cancel(Timer::B),
            Action::Send(b("ACK")),
            Action::Terminated,
        ]
    );
    assert_eq!(tx.state(), State::Terminated);
}

#[test]
fn client_invite_transport_error_and_invalid_status() {
    let (mut tx, _) = ClientInvite::start(UDP, timers(), b("INVITE"));
    assert_eq!(tx.on_response(42, None), vec![]);
    assert_eq!(tx.on_timer(Timer::D), vec![]);
    tx.on_response(100, None);
    // Proceeding sends nothing, so no transport error can belong to it.
    assert_eq!(tx.on_transport_error(), vec![]);
    tx.on_response(500, Some(b("ACK")));
    assert_eq!(
        tx.on_transport_error(),
        vec![Action::Timeout, Action::Terminated]
    );
    assert_eq!(tx.state(), State::Terminated);
}

#[test]
fn huge_t1_saturates_instead_of_panicking() {
    let huge = Timers {
        t1: Duration::MAX,
        t2: Duration::MAX,
        t4: Duration::MAX,
    };
    let (mut tx, first) = ClientInvite::start(UDP, huge, b("INVITE"));
    assert_eq!(first[2], Action::Schedule(Timer::B, Duration::MAX));
    assert_eq!(
        tx.on_timer(Timer::A),
        vec![
            Action::Send(b("INVITE")),
            Action::Schedule(Timer::A, Duration::MAX),
        ]
    );
    let mut tx = ServerInvite::new(UDP, huge);
    tx.respond(500, b("500"));
    assert_eq!(
        tx.on_timer(Timer::G),
        vec![
            Action::Send(b("500")),
            Action::Schedule(Timer::G, Duration::MAX),
        ]
    );
}

// ---- Key (§17.1.3, §17.2.3) ----
// Values from RFC 3665 §3.1 F1: "INVITE sip:bob@biloxi.example.com",
// "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9",
// "From: ...;tag=9fxced76sl", "Call-ID: 3848276298220188511@atlanta.example.com", "CSeq: 1".

const BRANCH: &str = "z9hG4bK74bf9";
const SENT_BY: &str = "client.atlanta.example.com:5060";

#[test]
fn ack_finds_the_invite_server_transaction() {
    let invite = Key::server(BRANCH, SENT_BY, "INVITE");
    assert_eq!(Key::server(BRANCH, SENT_BY, "ACK"), invite);
    // CANCEL shares the branch but is its own transaction (§9.2).
    assert_ne!(Key::server(BRANCH, SENT_BY, "CANCEL"), invite);
    assert_ne!(Key::server(BRANCH, SENT_BY, "BYE"), invite);
}

#[test]
fn different_sent_by_gives_a_different_server_key() {
    let a = Key::server(BRANCH, SENT_BY, "INVITE");
    // Own vector: another client reusing the same branch value.
    assert_ne!(
        Key::server(BRANCH, "client.biloxi.example.com:5060", "INVITE"),
        a
    );
    assert_ne!(
        Key::server(BRANCH, "client.atlanta.example.com:5070", "INVITE"),
        a
    );
    // Tokens and host names compare case-insensitively (§7.3.1).
    assert_eq!(
        Key::server("Z9HG4BK74BF9", "Client.Atlanta.Example.COM:5060", "INVITE"),
        a
    );
    // Methods are case-sensitive (§7.1).
    assert_ne!(Key::server(BRANCH, SENT_BY, "invite"), a);
}

#[test]
fn client_keys_use_branch_and_cseq_method() {
    let invite = Key::client(BRANCH, "INVITE");
    assert_eq!(Key::client(BRANCH, "INVITE"), invite);
    assert_ne!(Key::client(BRANCH, "CANCEL"), invite);
    assert_ne!(Key::client("z9hG4bK74bfa", "INVITE"), invite);
    // A client key never matches a server key built from the same strings.
    assert_ne!(Key::server(BRANCH, SENT_BY, "INVITE"), invite);
}

#[test]
fn rfc2543_fallback_key() {
    // Own vector in RFC 2543 style: the branch "7c337f30d7ce.1" has no magic cookie.
    let via = "SIP/2.0/UDP sip.example.com;branch=7c337f30d7ce.1";
    assert!(!is_rfc3261_branch("7c337f30d7ce.1"));
    assert!(is_rfc3261_branch(BRANCH));
    let invite = Key::server_rfc2543(
        "sip:bob@one.example.com",
        "1",
        "602214199@mouse.wonderland.com",
        1,
        via,
        "INVITE",
    );
    let ack = Key::server_rfc2543(
        "sip:bob@one.example.com",
        "1",
        "602214199@mouse.wonderland.com",
        1,
        via,
        "ACK",
    );
    assert_eq!(ack, invite);
    let next = Key::server_rfc2543(
        "sip:bob@one.example.com",
        "1",
        "602214199@mouse.wonderland.com",
        2,
        via,
        "INVITE",
    );
    assert_ne!(next, invite);
    let other_call = Key::server_rfc2543(
        "sip:bob@one.example.com",
        "1",
        "602214200@mouse.wonderland.com",
        1,
        via,
        "INVITE",
    );
    assert_ne!(other_call, invite);
    assert_ne!(
        Key::server("7c337f30d7ce.1", "sip.example.com", "INVITE"),
        invite
    );
}

#[test]
fn keys_work_in_a_hash_map() {
    let mut map = HashMap::new();
    map.insert(Key::server(BRANCH, SENT_BY, "INVITE"), "invite tx");
    map.insert(Key::server(BRANCH, SENT_BY, "CANCEL"), "cancel tx");
    assert_eq!(
        map.get(&Key::server(BRANCH, SENT_BY, "ACK")),
        Some(&"invite tx")
    );
    assert_eq!(
        map.get(&Key::server(BRANCH, SENT_BY, "CANCEL")),
        Some(&"cancel tx")
    );
    assert_eq!(map.len(), 2);
}
