//! SIP transaction state machines of RFC 3261 §17, sans-IO.
//!
//! - [`ClientInvite`]: §17.1.1 (Figure 5), INVITE client transaction.
//! - [`ClientNonInvite`]: §17.1.2 (Figure 6), non-INVITE client transaction.
//! - [`ServerInvite`]: §17.2.1 (Figure 7), INVITE server transaction.
//! - [`ServerNonInvite`]: §17.2.2 (Figure 8), non-INVITE server transaction.
//! - [`Key`]: transaction matching of §17.1.3 (client) and §17.2.3 (server, including the
//!   RFC 2543 fallback for branches without the magic cookie).
//! - [`Timers`]: T1/T2/T4 of §17.1.1.1, and the timer values of Table 4 (Appendix A).
//!
//! The machines never read the clock and never touch a socket: the caller (an actor) feeds them
//! events and executes the returned [`Action`]s in order, arming and cancelling timers in its own
//! `TimerQueue` (see `crate::sip::timer`). Messages are opaque `Bytes` built by the caller.
//!
//! Conventions shared by all four machines:
//! - A timer whose Table 4 value is zero (Timers D, I, J, K over a reliable transport) is never
//!   scheduled: the machine returns [`Action::Terminated`] directly instead of a zero delay.
//! - When a machine leaves a state it emits [`Action::Cancel`] for that state's pending timers;
//!   after [`Action::Terminated`] the caller drops the transaction and all its remaining timers.
//! - Events that the RFC figures do not define for the current state (a stale timer, a status
//!   code outside 100–699, an ACK before the final response, ...) return no action.
//! - A transport error is honoured only in the states where the RFC figures show it (the states in
//!   which the transaction itself sends); it yields [`Action::Timeout`] then
//!   [`Action::Terminated`] (§17.1.4, §17.2.4).
//!
//! RFC 6026 is not implemented: its "Accepted" state and Timers L/M do not exist in this API, so
//! an INVITE transaction that sees a 2xx terminates at once, as in RFC 3261. The TU/dialog layer
//! therefore owns 2xx retransmission (UAS, §13.3.1.4) and 2xx reception after termination
//! (UAC, §13.2.2.4 and §18.1.2).

use bytes::Bytes;
use std::time::Duration;

/// Default T1, the RTT estimate (RFC 3261 Table 4: 500 ms).
pub const T1: Duration = Duration::from_millis(500);
/// Default T2, the maximum retransmit interval for non-INVITE requests and INVITE responses
/// (RFC 3261 Table 4: 4 s).
pub const T2: Duration = Duration::from_secs(4);
/// Default T4, the maximum time a message stays in the network (RFC 3261 Table 4: 5 s).
pub const T4: Duration = Duration::from_secs(5);

/// The magic cookie that starts every RFC 3261 branch parameter (§8.1.1.7); without it, servers
/// fall back to RFC 2543 matching ([`Key::server_rfc2543`]).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// T1/T2/T4 of RFC 3261 §17.1.1.1 / Table 4 (configured: 500 ms / 4 s / 5 s by default).
///
/// All other timers derive from these three; `t1` must be non-zero, otherwise the
/// retransmission timers (A, E, G) would fire back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Round-trip time estimate: first retransmit interval and base of the 64*T1 timeouts.
    pub t1: Duration,
    /// Cap of the retransmit interval of non-INVITE requests and INVITE final responses.
    pub t2: Duration,
    /// Time a message may linger in the network: wait of Timers I and K over unreliable transports.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: T1,
            t2: T2,
            t4: T4,
        }
    }
}

impl Timers {
    /// 64*T1: Timers B, D, F, H and J (saturating, so a huge T1 cannot panic).
    fn sixty_four_t1(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Next interval of a capped retransmission timer (E, G): MIN(2*current, T2).
    fn doubled_capped(&self, current: Duration) -> Duration {
        current.saturating_mul(2).min(self.t2)
    }
}

/// Whether the transport retransmits for us (TCP, TLS, SCTP) or not (UDP); selects the
/// retransmission timers and the zero waits of Table 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reliability {
    /// TCP, TLS, SCTP, WebSocket: no retransmission timers, Timers D/I/J/K are zero.
    Reliable,
    /// UDP: retransmission timers A/E/G run and the Completed/Confirmed states linger.
    Unreliable,
}

/// Timer names of RFC 3261 Table 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE request retransmit interval (UDP only), initially T1, doubling.
    A,
    /// INVITE transaction timeout, 64*T1.
    B,
    /// Wait time for response retransmits in an INVITE client transaction: 64*T1 over UDP, 0
    /// otherwise.
    D,
    /// Non-INVITE request retransmit interval (UDP only), initially T1, doubling up to T2.
    E,
    /// Non-INVITE transaction timeout, 64*T1.
    F,
    /// INVITE response retransmit interval (UDP only), initially T1, doubling up to T2.
    G,
    /// Wait time for ACK receipt, 64*T1.
    H,
    /// Wait time for ACK retransmits: T4 over UDP, 0 otherwise.
    I,
    /// Wait time for non-INVITE request retransmits: 64*T1 over UDP, 0 otherwise.
    J,
    /// Wait time for non-INVITE response retransmits: T4 over UDP, 0 otherwise.
    K,
}

/// What the caller must do after feeding an event to a transaction, executed in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// (Re)transmit these bytes to the peer of the transaction.
    Send(Bytes),
    /// Arm `timer` to fire after the delay (re-arming a timer replaces its previous deadline).
    Schedule(Timer, Duration),
    /// Cancel a pending timer.
    Cancel(Timer),
    /// Pass the received response (by status code) up to the transaction user; emitted by client
    /// transactions for every 1xx and for the first final response only.
    ///
    /// Retransmissions of a 2xx to INVITE arrive after the INVITE client transaction has
    /// terminated (§17.1.1.2), so they match no transaction: the caller must pass such a 2xx
    /// to the TU itself (§18.1.2), which re-sends its ACK (§13.2.2.4). No machine emits this
    /// action for them.
    DeliverResponse(u16),
    /// The transaction timed out (Timer B, F or H; or a transport error) — tell the TU.
    Timeout,
    /// The transaction is over; the caller removes it and cancels its timers.
    Terminated,
}

/// States of the four transaction machines (Figures 5–8 of RFC 3261); each machine uses a subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// INVITE client: request sent, no response yet.
    Calling,
    /// Non-INVITE client or server: request sent or received, no response yet.
    Trying,
    /// A provisional response was received (client) or sent (server).
    Proceeding,
    /// A final response was received (client) or sent (server); absorbing retransmissions.
    Completed,
    /// INVITE server: the ACK for a non-2xx final arrived; absorbing ACK retransmissions.
    Confirmed,
    /// Over: the caller must drop the transaction.
    Terminated,
}

/// Status code classes that drive the machines; anything outside 100–699 is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Provisional,
    Success,
    Failure,
}

fn classify(status: u16) -> Option<Class> {
    match status {
        100..=199 => Some(Class::Provisional),
        200..=299 => Some(Class::Success),
        300..=699 => Some(Class::Failure),
        _ => None,
    }
}

/// Enters a lingering state (Completed or Confirmed) guarded by `timer`, or terminates at once
/// when the Table 4 value is zero (reliable transport, or a zero configured delay).
fn linger(
    rel: Reliability,
    delay: Duration,
    timer: Timer,
    lingering: State,
    actions: &mut Vec<Action>,
) -> State {
    if rel == Reliability::Reliable || delay.is_zero() {
        actions.push(Action::Terminated);
        State::Terminated
    } else {
        actions.push(Action::Schedule(timer, delay));
        lingering
    }
}

/// Actions for a transaction failure (timeout or transport error): inform the TU, then end.
fn fail(state: &mut State) -> Vec<Action> {
    *state = State::Terminated;
    vec![Action::Timeout, Action::Terminated]
}

/// RFC 3261 §17.2.2 (Figure 8): Trying -> Proceeding (1xx) -> Completed (final; Timer J = 64*T1
/// unreliable, 0 reliable) -> Terminated. Retransmitted requests are answered with the last response.
#[derive(Debug, Clone)]
pub struct ServerNonInvite {
    rel: Reliability,
    timers: Timers,
    state: State,
    /// Last response the TU sent, re-sent on request retransmissions.
    last_response: Option<Bytes>,
}

impl ServerNonInvite {
    /// Creates the transaction for a newly received request (the caller passes it to the TU);
    /// it starts in Trying.
    pub fn new(rel: Reliability, timers: Timers) -> Self {
        ServerNonInvite {
            rel,
            timers,
            state: State::Trying,
            last_response: None,
        }
    }

    /// Current state, for tracing and tests.
    pub fn state(&self) -> State {
        self.state
    }

    /// A retransmission of the request arrived: discarded in Trying, answered with the last
    /// response in Proceeding and Completed.
    pub fn on_request_retransmission(&mut self) -> Vec<Action> {
        match (self.state, &self.last_response) {
            (State::Proceeding | State::Completed, Some(response)) => {
                vec![Action::Send(response.clone())]
            }
            _ => Vec::new(),
        }
    }

    /// The TU responds: a 1xx is sent and moves to Proceeding; a final response is sent and
    /// moves to Completed (Timer J) or straight to Terminated over a reliable transport.
    /// Ignored (empty) once Completed, and for status codes outside 100–699.
    pub fn respond(&mut self, status: u16, response: Bytes) -> Vec<Action> {
        let Some(class) = classify(status) else {
            return Vec::new();
        };
        if !matches!(self.state, State::Trying | State::Proceeding) {
            return Vec::new();
        }
        let mut actions = vec![Action::Send(response.clone())];
        self.last_response = Some(response);
        self.state = if class == Class::Provisional {
            State::Proceeding
        } else {
            linger(
                self.rel,
                self.timers.sixty_four_t1(),
                Timer::J,
                State::Completed,
                &mut actions,
            )
        };
        actions
    }

    /// A timer fired: only Timer J in Completed has an effect (Terminated).
    pub fn on_timer(&mut self, t: Timer) -> Vec<Action> {
        if t == Timer::J && self.state == State::Completed {
            self.state = State::Terminated;
            vec![Action::Terminated]
        } else {
            Vec::new()
        }
    }

    /// Sending a response failed: in Proceeding or Completed, tell the TU and terminate
    /// (Figure 8); ignored in Trying, where nothing was sent yet.
    pub fn on_transport_error(&mut self) -> Vec<Action> {
        match self.state {
            State::Proceeding | State::Completed => fail(&mut self.state),
            _ => Vec::new(),
        }
    }
}

/// RFC 3261 §17.2.1 (Figure 7), without the RFC 6026 correction (see the module doc):
/// Proceeding -> Completed (300-699; Timer G = T1 doubling up to T2 unreliable; Timer H = 64*T1)
/// -> Confirmed on ACK (Timer I = T4 unreliable, 0 reliable) -> Terminated; 2xx -> Terminated.
///
/// After a 2xx the transaction is gone: the TU/dialog must retransmit the 2xx until its ACK
/// arrives (§13.3.1.4) and must absorb retransmitted INVITEs of that dialog itself.
/// An ACK in Confirmed is absorbed (no action).
#[derive(Debug, Clone)]
pub struct ServerInvite {
    rel: Reliability,
    timers: Timers,
    state: State,
    /// Last response the TU sent (a 1xx in Proceeding, the final one in Completed).
    last_response: Option<Bytes>,
    /// Current Timer G interval.
    g: Duration,
}

impl ServerInvite {
    /// Creates the transaction for a newly received INVITE; it starts in Proceeding, and the
    /// caller sends 100 Trying through [`ServerInvite::respond`] unless the TU answers within
    /// 200 ms (§17.2.1).
    pub fn new(rel: Reliability, timers: Timers) -> Self {
        ServerInvite {
            rel,
            timers,
            state: State::Proceeding,
            last_response: None,
            g: timers.t1,
        }
    }

    /// Current state, for tracing and tests.
    pub fn state(&self) -> State {
        self.state
    }

    /// A retransmitted INVITE arrived: re-send the last provisional (Proceeding) or the final
    /// response (Completed); absorbed in Confirmed and Terminated.
    pub fn on_request_retransmission(&mut self) -> Vec<Action> {
        match (self.state, &self.last_response) {
            (State::Proceeding | State::Completed, Some(response)) => {
                vec![Action::Send(response.clone())]
            }
            _ => Vec::new(),
        }
    }

    /// The TU responds (only honoured in Proceeding): a 1xx is sent; a 2xx is sent and
    /// terminates the transaction; a 300–699 is sent and moves to Completed, arming Timer G
    /// (unreliable only) and Timer H. Status codes outside 100–699 are ignored.
    pub fn respond(&mut self, status: u16, response: Bytes) -> Vec<Action> {
        let Some(class) = classify(status) else {
            return Vec::new();
        };
        if self.state != State::Proceeding {
            return Vec::new();
        }
        let mut actions = vec![Action::Send(response.clone())];
        match class {
            Class::Provisional => self.last_response = Some(response),
            Class::Success => {
                self.state = State::Terminated;
                actions.push(Action::Terminated);
            }
            Class::Failure => {
                self.last_response = Some(response);
                self.state = State::Completed;
                if self.rel == Reliability::Unreliable {
                    self.g = self.timers.t1;
                    actions.push(Action::Schedule(Timer::G, self.g));
                }
                actions.push(Action::Schedule(Timer::H, self.timers.sixty_four_t1()));
            }
        }
        actions
    }

    /// The ACK for the non-2xx final response arrived: Completed -> Confirmed (Timer I), or
    /// straight to Terminated over a reliable transport; absorbed in every other state.
    pub fn on_ack(&mut self) -> Vec<Action> {
        if self.state != State::Completed {
            return Vec::new();
        }
        let mut actions = Vec::new();
        if self.rel == Reliability::Unreliable {
            actions.push(Action::Cancel(Timer::G));
        }
        actions.push(Action::Cancel(Timer::H));
        self.state = linger(
            self.rel,
            self.timers.t4,
            Timer::I,
            State::Confirmed,
            &mut actions,
        );
        actions
    }

    /// A timer fired: G re-sends the final response and doubles (capped at T2), H means the ACK
    /// never came (Timeout), I ends Confirmed. Anything else is ignored.
    pub fn on_timer(&mut self, t: Timer) -> Vec<Action> {
        match (t, self.state) {
            (Timer::G, State::Completed) if self.rel == Reliability::Unreliable => {
                let Some(response) = self.last_response.clone() else {
                    return Vec::new();
                };
                self.g = self.timers.doubled_capped(self.g);
                vec![Action::Send(response), Action::Schedule(Timer::G, self.g)]
            }
            (Timer::H, State::Completed) => fail(&mut self.state),
            (Timer::I, State::Confirmed) => {
                self.state = State::Terminated;
                vec![Action::Terminated]
            }
            _ => Vec::new(),
        }
    }

    /// Sending a response failed: in Proceeding or Completed, tell the TU and terminate
    /// (Figure 7); ignored in Confirmed, where nothing is sent.
    pub fn on_transport_error(&mut self) -> Vec<Action> {
        match self.state {
            State::Proceeding | State::Completed => fail(&mut self.state),
            _ => Vec::new(),
        }
    }
}

/// RFC 3261 §17.1.2 (Figure 6): Trying (Timer E = T1, doubling to T2, only unreliable; Timer F =
/// 64*T1) -> Proceeding (1xx; E continues at T2) -> Completed (final; Timer K = T4 unreliable, 0
/// reliable) -> Terminated.
#[derive(Debug, Clone)]
pub struct ClientNonInvite {
    rel: Reliability,
    timers: Timers,
    state: State,
    request: Bytes,
    /// Current Timer E interval.
    e: Duration,
}

impl ClientNonInvite {
    /// Returns the transaction and the first actions (Send(request), Schedule(E) if unreliable, Schedule(F)).
    pub fn start(rel: Reliability, timers: Timers, request: Bytes) -> (Self, Vec<Action>) {
        let mut actions = vec![Action::Send(request.clone())];
        if rel == Reliability::Unreliable {
            actions.push(Action::Schedule(Timer::E, timers.t1));
        }
        actions.push(Action::Schedule(Timer::F, timers.sixty_four_t1()));
        let tx = ClientNonInvite {
            rel,
            timers,
            state: State::Trying,
            request,
            e: timers.t1,
        };
        (tx, actions)
    }

    /// Current state, for tracing and tests.
    pub fn state(&self) -> State {
        self.state
    }

    /// A response matched this transaction: each 1xx is delivered (Trying -> Proceeding), the
    /// first final response is delivered and moves to Completed (Timer K) or Terminated over a
    /// reliable transport; retransmitted finals are absorbed in Completed. Status codes outside
    /// 100–699 are ignored.
    pub fn on_response(&mut self, status: u16) -> Vec<Action> {
        let Some(class) = classify(status) else {
            return Vec::new();
        };
        if !matches!(self.state, State::Trying | State::Proceeding) {
            return Vec::new();
        }
        let mut actions = vec![Action::DeliverResponse(status)];
        if class == Class::Provisional {
            // Timer E keeps its pending deadline; from its next firing on it uses T2.
            self.state = State::Proceeding;
            return actions;
        }
        if self.rel == Reliability::Unreliable {
            actions.push(Action::Cancel(Timer::E));
        }
        actions.push(Action::Cancel(Timer::F));
        self.state = linger(
            self.rel,
            self.timers.t4,
            Timer::K,
            State::Completed,
            &mut actions,
        );
        actions
    }

    /// A timer fired: E re-sends the request (MIN(2E, T2) in Trying, T2 in Proceeding), F means
    /// no final response came (Timeout), K ends Completed. Anything else is ignored.
    pub fn on_timer(&mut self, t: Timer) -> Vec<Action> {
        match (t, self.state) {
            (Timer::E, State::Trying | State::Proceeding)
                if self.rel == Reliability::Unreliable =>
            {
                self.e = if self.state == State::Trying {
                    self.timers.doubled_capped(self.e)
                } else {
                    self.timers.t2
                };
                vec![
                    Action::Send(self.request.clone()),
                    Action::Schedule(Timer::E, self.e),
                ]
            }
            (Timer::F, State::Trying | State::Proceeding) => fail(&mut self.state),
            (Timer::K, State::Completed) => {
                self.state = State::Terminated;
                vec![Action::Terminated]
            }
            _ => Vec::new(),
        }
    }

    /// Sending the request failed: in Trying or Proceeding, tell the TU and terminate
    /// (§17.1.4, Figure 6); ignored in Completed, where nothing is sent.
    pub fn on_transport_error(&mut self) -> Vec<Action> {
        match self.state {
            State::Trying | State::Proceeding => fail(&mut self.state),
            _ => Vec::new(),
        }
    }
}

/// RFC 3261 §17.1.1 (Figure 5): Calling (Timer A = T1 doubling, unreliable only; Timer B = 64*T1)
/// -> Proceeding -> Completed on 300-699 (the transaction sends the ACK it is given; Timer D =
/// 64*T1 (>= 32 s) unreliable, 0 reliable; retransmitted finals re-send the ACK) -> Terminated;
/// 2xx -> Terminated after delivering (the TU sends the ACK for 2xx).
#[derive(Debug, Clone)]
pub struct ClientInvite {
    rel: Reliability,
    timers: Timers,
    state: State,
    request: Bytes,
    /// Current Timer A interval.
    a: Duration,
    /// ACK for the non-2xx final response, re-sent on its retransmissions.
    ack: Option<Bytes>,
}

impl ClientInvite {
    /// Returns the transaction and the first actions (Send(request), Schedule(A) if unreliable,
    /// Schedule(B)).
    pub fn start(rel: Reliability, timers: Timers, request: Bytes) -> (Self, Vec<Action>) {
        let mut actions = vec![Action::Send(request.clone())];
        if rel == Reliability::Unreliable {
            actions.push(Action::Schedule(Timer::A, timers.t1));
        }
        actions.push(Action::Schedule(Timer::B, timers.sixty_four_t1()));
        let tx = ClientInvite {
            rel,
            timers,
            state: State::Calling,
            request,
            a: timers.t1,
            ack: None,
        };
        (tx, actions)
    }

    /// Current state, for tracing and tests.
    pub fn state(&self) -> State {
        self.state
    }

    /// A response matched this transaction.
    ///
    /// `ack` is the ACK for a non-2xx final (built by the caller per §17.1.1.3); ignored otherwise.
    /// A 1xx is delivered and stops Timers A and B (Calling -> Proceeding); a 2xx is delivered
    /// and terminates; a 300–699 is delivered, the ACK is sent and the transaction moves to
    /// Completed (Timer D) or Terminated over a reliable transport. In Completed, a
    /// retransmitted 300–699 re-sends the stored ACK (or `ack` if none was stored) and is not
    /// delivered again. Status codes outside 100–699 are ignored.
    pub fn on_response(&mut self, status: u16, ack: Option<Bytes>) -> Vec<Action> {
        let Some(class) = classify(status) else {
            return Vec::new();
        };
        match self.state {
            State::Calling | State::Proceeding => {}
            State::Completed if class == Class::Failure => {
                if self.ack.is_none() {
                    self.ack = ack;
                }
                return self.ack.iter().cloned().map(Action::Send).collect();
            }
            _ => return Vec::new(),
        }
        let mut actions = vec![Action::DeliverResponse(status)];
        // Timers A and B only run in Calling.
        if self.state == State::Calling {
            if self.rel == Reliability::Unreliable {
                actions.push(Action::Cancel(Timer::A));
            }
            actions.push(Action::Cancel(Timer::B));
        }
        match class {
            Class::Provisional => self.state = State::Proceeding,
            Class::Success => {
                self.state = State::Terminated;
                actions.push(Action::Terminated);
            }
            Class::Failure => {
                self.ack = ack;
                if let Some(ack) = &self.ack {
                    actions.push(Action::Send(ack.clone()));
                }
                // RFC 3261 Table 4 asks for "> 32 s" over UDP; 64*T1 is exactly 32 s with the
                // default T1 of 500 ms.
                self.state = linger(
                    self.rel,
                    self.timers.sixty_four_t1(),
                    Timer::D,
                    State::Completed,
                    &mut actions,
                );
            }
        }
        actions
    }

    /// A timer fired: A re-sends the INVITE and doubles its interval (no cap, B bounds it), B
    /// means no response came (Timeout), D ends Completed. Anything else is ignored.
    pub fn on_timer(&mut self, t: Timer) -> Vec<Action> {
        match (t, self.state) {
            (Timer::A, State::Calling) if self.rel == Reliability::Unreliable => {
                self.a = self.a.saturating_mul(2);
                vec![
                    Action::Send(self.request.clone()),
                    Action::Schedule(Timer::A, self.a),
                ]
            }
            (Timer::B, State::Calling) => fail(&mut self.state),
            (Timer::D, State::Completed) => {
                self.state = State::Terminated;
                vec![Action::Terminated]
            }
            _ => Vec::new(),
        }
    }

    /// Sending the INVITE or the ACK failed: in Calling or Completed, tell the TU and terminate
    /// (§17.1.4, Figure 5); ignored in Proceeding, where the transaction sends nothing.
    pub fn on_transport_error(&mut self) -> Vec<Action> {
        match self.state {
            State::Calling | State::Completed => fail(&mut self.state),
            _ => Vec::new(),
        }
    }
}

/// Whether a Via branch was generated by an RFC 3261 client (starts with [`MAGIC_COOKIE`]), which
/// selects [`Key::server`] over [`Key::server_rfc2543`] (§17.2.3).
pub fn is_rfc3261_branch(branch: &str) -> bool {
    branch.starts_with(MAGIC_COOKIE)
}

/// Transaction identity (RFC 3261 §17.1.3 for clients: branch + CSeq method; §17.2.3 for servers:
/// branch + sent-by + method, with ACK matching the INVITE's transaction; plus the RFC 2543
/// fallback key (Request-URI, From tag, Call-ID, CSeq, top Via) for branches without the magic cookie).
///
/// Normalisation: the branch and the From tag are tokens and the sent-by host is a host name,
/// all compared case-insensitively (§7.3.1), so they are ASCII-lowercased; methods (§7.1),
/// Call-ID (§20.8), Request-URI and top Via are kept byte for byte, as retransmissions repeat them
/// exactly. Client and server keys never compare equal to each other.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(KeyKind);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyKind {
    Client {
        branch: String,
        method: String,
    },
    Server {
        branch: String,
        sent_by: String,
        method: String,
    },
    ServerRfc2543 {
        request_uri: String,
        from_tag: String,
        call_id: String,
        cseq: u32,
        top_via: String,
        method: String,
    },
}

/// Method part of a server key: an ACK belongs to the INVITE transaction it acknowledges
/// (§17.2.3); every other method, CANCEL included, names its own transaction.
fn server_method(method: &str) -> String {
    if method == "ACK" {
        "INVITE".to_owned()
    } else {
        method.to_owned()
    }
}

impl Key {
    /// Key of a client transaction, matched by responses: top-Via branch plus CSeq method
    /// (§17.1.3), so a CANCEL and its INVITE, which share a branch, stay apart.
    pub fn client(branch: &str, cseq_method: &str) -> Key {
        Key(KeyKind::Client {
            branch: branch.trim().to_ascii_lowercase(),
            method: cseq_method.trim().to_owned(),
        })
    }

    /// Key of a server transaction for an RFC 3261 branch (§17.2.3): branch, sent-by of the
    /// top Via and request method.
    ///
    /// An ACK maps to "INVITE" so that it finds the INVITE server transaction it acknowledges;
    /// a CANCEL keeps "CANCEL" and so gets its own transaction (the caller finds the INVITE to
    /// cancel with `Key::server(branch, sent_by, "INVITE")`, §9.2).
    pub fn server(branch: &str, sent_by: &str, method: &str) -> Key {
        Key(KeyKind::Server {
            branch: branch.trim().to_ascii_lowercase(),
            sent_by: sent_by.trim().to_ascii_lowercase(),
            method: server_method(method.trim()),
        })
    }

    /// Key of a server transaction for a request whose branch lacks the magic cookie (RFC 2543
    /// peers, §17.2.3): Request-URI, From tag, Call-ID, CSeq number, whole top Via and method.
    ///
    /// The To tag is left out: the INVITE has none while its ACK carries the tag of our
    /// response, and both must find the same transaction (ACK maps to "INVITE" as in
    /// [`Key::server`]).
    pub fn server_rfc2543(
        request_uri: &str,
        from_tag: &str,
        call_id: &str,
        cseq: u32,
        top_via: &str,
        method: &str,
    ) -> Key {
        Key(KeyKind::ServerRfc2543 {
            request_uri: request_uri.trim().to_owned(),
            from_tag: from_tag.trim().to_ascii_lowercase(),
            call_id: call_id.trim().to_owned(),
            cseq,
            top_via: top_via.trim().to_owned(),
            method: server_method(method.trim()),
        })
    }
}

#[cfg(test)]
mod tests {
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
}
