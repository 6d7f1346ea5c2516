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
mod tests;
