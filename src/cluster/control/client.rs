//! The node's control-plane client transactions (DESIGN.md §5), on the RFC 3261 §17.1
//! machines of [`crate::sip::transaction`]: [`ClientInvite`] for INVITE,
//! [`ClientNonInvite`] for the rest, both with [`Reliability::Reliable`] since inter-node SIP
//! runs over TCP (no retransmissions; timers B and F still bound a transaction, §17.1.1.2,
//! §17.1.2.2). On top of them every request has a CCMP deadline (`cluster.ccmp_timeout_ms`,
//! shorter for OPTIONS probes): a server that does not answer within it is a
//! [`ControlError::Timeout`], and a response that arrives later matches nothing and is
//! dropped.
//!
//! Sans-IO: [`CcmpClient::start`] returns the bytes to send and the timers to arm as
//! [`Effect`]s, [`CcmpClient::on_response`] and [`CcmpClient::on_timer`] return the
//! transaction's outcome with the caller's typed continuation `P` (no boxed closures).
//! Responses are matched by branch and CSeq method (§17.1.3).
//!
//! An INVITE answered with a non-2xx final is not acknowledged by the transaction (the
//! caller gives it no ACK): our own server side ignores such ACKs, and the dialog layer sends
//! the ACK of a 2xx (§13.2.2.4).

use std::collections::HashMap;
use std::time::Duration;

use crate::cluster::ccmp::{self, CcmpResponse};
use crate::cluster::dialog;
use crate::sip::message::{Method, Response};
use crate::sip::transaction::{
    Action, ClientInvite, ClientNonInvite, Key, Reliability, Timer as SipTimer, Timers,
};

use super::effect::{Effect, Outgoing, Timer, TimerId};
use super::error::ControlError;

/// The outcome of one client transaction: the final 2xx, or why there is none.
#[derive(Debug)]
pub struct Done<P> {
    /// What the caller wanted the request for.
    pub purpose: P,
    /// The 2xx response, or the error: [`ControlError::Timeout`], [`ControlError::Gone`]
    /// (481) or [`ControlError::Refused`] (any other final status).
    pub result: Result<Response, ControlError>,
}

#[derive(Debug)]
enum Machine {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The CCMP deadline.
    Deadline,
    /// An RFC 3261 timer of the machine.
    Sip(SipTimer),
}

#[derive(Debug)]
struct Tx<P> {
    machine: Machine,
    purpose: P,
    /// Armed timers of this transaction.
    timers: Vec<(TimerId, Kind)>,
}

/// Every control-plane client transaction of a node, keyed by branch and method.
#[derive(Debug)]
pub struct CcmpClient<P> {
    secret: String,
    timers: Timers,
    txs: HashMap<Key, Tx<P>>,
    /// Armed timer -> its transaction.
    armed: HashMap<TimerId, Key>,
    next_timer: u64,
}

impl<P> CcmpClient<P> {
    /// A client signing and checking under the cluster `secret`, with the default RFC 3261
    /// timers (T1 = 500 ms: timers B and F are 32 s, beyond any CCMP deadline).
    pub fn new(secret: &str) -> Self {
        CcmpClient {
            secret: secret.to_string(),
            timers: Timers::default(),
            txs: HashMap::new(),
            armed: HashMap::new(),
            next_timer: 0,
        }
    }

    /// Transactions in flight.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether no transaction is in flight.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Starts a client transaction for `req`: the effects send it and arm its timers (the
    /// RFC 3261 ones and the CCMP deadline). Its outcome comes back, with `purpose`, from
    /// [`Self::on_response`] or [`Self::on_timer`].
    pub fn start(&mut self, req: Outgoing, purpose: P, out: &mut Vec<Effect>) {
        let key = Key::client(&req.branch, req.method.as_str());
        let (machine, actions) = if req.method == Method::Invite {
            let (m, a) = ClientInvite::start(Reliability::Reliable, self.timers, req.bytes);
            (Machine::Invite(m), a)
        } else {
            let (m, a) = ClientNonInvite::start(Reliability::Reliable, self.timers, req.bytes);
            (Machine::NonInvite(m), a)
        };
        let mut tx = Tx {
            machine,
            purpose,
            timers: Vec::new(),
        };
        self.arm(&key, Kind::Deadline, req.deadline, &mut tx, out);
        let to = req.to;
        for action in actions {
            match action {
                Action::Send(bytes) => out.push(Effect::Send { to, bytes }),
                Action::Schedule(t, after) => self.arm(&key, Kind::Sip(t), after, &mut tx, out),
                // A new transaction only sends and schedules.
                _ => {}
            }
        }
        self.txs.insert(key, tx);
    }

    fn arm(
        &mut self,
        key: &Key,
        kind: Kind,
        after: Duration,
        tx: &mut Tx<P>,
        out: &mut Vec<Effect>,
    ) {
        let id = TimerId(self.next_timer);
        self.next_timer += 1;
        tx.timers.push((id, kind));
        self.armed.insert(id, key.clone());
        out.push(Effect::Arm(Timer::Client(id), after));
    }

    /// A response came back: a final one ends its transaction with its outcome; a
    /// provisional one, or one matching no transaction (late, after a timeout), gives
    /// nothing.
    pub fn on_response(&mut self, resp: Response, out: &mut Vec<Effect>) -> Option<Done<P>> {
        let branch = resp.base.via.branch.as_deref()?;
        let key = Key::client(branch, resp.base.cseq.method.as_str());
        let tx = self.txs.get_mut(&key)?;
        let actions = match &mut tx.machine {
            Machine::Invite(m) => m.on_response(resp.status, None),
            Machine::NonInvite(m) => m.on_response(resp.status),
        };
        let mut final_status = None;
        for action in actions {
            match action {
                Action::DeliverResponse(status) if status >= 200 => final_status = Some(status),
                Action::Cancel(t) => {
                    if let Some(i) = tx.timers.iter().position(|(_, k)| *k == Kind::Sip(t)) {
                        let (id, _) = tx.timers.remove(i);
                        self.armed.remove(&id);
                        out.push(Effect::Cancel(id));
                    }
                }
                // Over TCP a final response needs no retransmission or lingering state, and
                // the transaction ends with it (Terminated) whatever the machine says next.
                _ => {}
            }
        }
        final_status?;
        let tx = self.end(&key, out)?;
        let result = outcome(&self.secret, resp);
        Some(Done {
            purpose: tx.purpose,
            result,
        })
    }

    /// A timer armed by this client fired: the CCMP deadline, timer B or timer F end the
    /// transaction with [`ControlError::Timeout`]; a stale timer gives nothing.
    pub fn on_timer(&mut self, id: TimerId, out: &mut Vec<Effect>) -> Option<Done<P>> {
        let key = self.armed.remove(&id)?;
        let tx = self.txs.get_mut(&key)?;
        let i = tx.timers.iter().position(|(t, _)| *t == id)?;
        let (_, kind) = tx.timers.remove(i);
        let timed_out = match kind {
            Kind::Deadline => true,
            Kind::Sip(t) => {
                let actions = match &mut tx.machine {
                    Machine::Invite(m) => m.on_timer(t),
                    Machine::NonInvite(m) => m.on_timer(t),
                };
                actions.contains(&Action::Timeout)
            }
        };
        if !timed_out {
            return None;
        }
        let tx = self.end(&key, out)?;
        Some(Done {
            purpose: tx.purpose,
            result: Err(ControlError::Timeout),
        })
    }

    /// Drops a transaction and cancels its remaining timers.
    fn end(&mut self, key: &Key, out: &mut Vec<Effect>) -> Option<Tx<P>> {
        let tx = self.txs.remove(key)?;
        for (id, _) in &tx.timers {
            self.armed.remove(id);
            out.push(Effect::Cancel(*id));
        }
        Some(tx)
    }
}

/// A final response as the caller sees it: a 2xx, the peer's 481, or a refusal whose
/// reason is the CCMP `response-string` of a signed CCMP error body, else the SIP reason.
fn outcome(secret: &str, resp: Response) -> Result<Response, ControlError> {
    match resp.status {
        200..=299 => Ok(resp),
        481 => Err(ControlError::Gone),
        status => {
            let reason = ccmp_body(secret, &resp)
                .err()
                .and_then(|e| match e {
                    ControlError::Refused { reason, .. } => Some(reason),
                    _ => None,
                })
                .unwrap_or_else(|| resp.reason.clone());
            Err(ControlError::Refused { status, reason })
        }
    }
}

/// Checks the signature of a response carrying a CCMP body and reads it: a successful
/// CCMP response, or why not ([`ControlError::BadSignature`], [`ControlError::Malformed`],
/// or [`ControlError::Refused`] with the CCMP `response-code` and `response-string`).
pub fn ccmp_body(secret: &str, resp: &Response) -> Result<CcmpResponse, ControlError> {
    let material =
        dialog::signed_material(&resp.base.call_id, &resp.base.cseq.to_string(), resp.body());
    ccmp::verify(secret, &material, resp.header(ccmp::SIGNATURE_HEADER))
        .map_err(|e| ControlError::BadSignature(e.to_string()))?;
    let body =
        CcmpResponse::parse(resp.body()).map_err(|e| ControlError::Malformed(e.to_string()))?;
    if !body.is_success() {
        return Err(ControlError::Refused {
            status: body.code,
            reason: body.reason.unwrap_or_default(),
        });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse, Limits, Message};
    use bytes::Bytes;
    use std::net::SocketAddr;

    fn addr() -> SocketAddr {
        "10.0.0.1:5060".parse().unwrap()
    }

    fn request(method: Method, branch: &str) -> Outgoing {
        let bytes = format!(
            "{m} sip:cluster@10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.2:5060;branch={branch}\r\n\
             From: <sip:cluster@10.0.0.2>;tag=a\r\nTo: <sip:cluster@10.0.0.1>\r\nCall-ID: c1\r\n\
             CSeq: 1 {m}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            m = method.as_str()
        );
        Outgoing {
            to: addr(),
            method,
            branch: branch.to_string(),
            bytes: Bytes::from(bytes),
            deadline: Duration::from_millis(2000),
        }
    }

    fn response(status: u16, reason: &str, method: &str, branch: &str, body: &str) -> Response {
        let mut text = format!(
            "SIP/2.0 {status} {reason}\r\nVia: SIP/2.0/TCP 10.0.0.2:5060;branch={branch}\r\n\
             From: <sip:cluster@10.0.0.2>;tag=a\r\nTo: <sip:cluster@10.0.0.1>;tag=b\r\n\
             Call-ID: c1\r\nCSeq: 1 {method}\r\n"
        );
        if !body.is_empty() {
            let material = dialog::signed_material("c1", &format!("1 {method}"), body.as_bytes());
            text += &format!(
                "{}: {}\r\nContent-Type: {}\r\n",
                ccmp::SIGNATURE_HEADER,
                ccmp::sign("s", &material),
                ccmp::CONTENT_TYPE
            );
        }
        text += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
        match parse(
            text.as_bytes(),
            &Limits {
                max_message_bytes: 65536,
            },
        ) {
            Ok(Message::Response(r)) => r,
            other => panic!("not a response: {other:?}"),
        }
    }

    /// The armed timers among the effects: (id, delay).
    fn armed(effects: &[Effect]) -> Vec<(TimerId, Duration)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Arm(Timer::Client(id), d) => Some((*id, *d)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_request_is_sent_once_with_its_deadline_and_timer_f() {
        let mut client: CcmpClient<&str> = CcmpClient::new("s");
        let mut out = Vec::new();
        client.start(request(Method::Info, "z9hG4bK-ccmp-1"), "report", &mut out);
        let sends = out
            .iter()
            .filter(|e| matches!(e, Effect::Send { to, .. } if *to == addr()))
            .count();
        assert_eq!(sends, 1, "TCP: no retransmission");
        let delays: Vec<Duration> = armed(&out).into_iter().map(|(_, d)| d).collect();
        assert_eq!(
            delays,
            [Duration::from_millis(2000), Duration::from_secs(32)],
            "the CCMP deadline and timer F (64*T1)"
        );
        assert_eq!(client.len(), 1);
    }

    #[test]
    fn the_deadline_on_a_virtual_clock_is_a_timeout_and_a_late_response_is_ignored() {
        let mut client: CcmpClient<u32> = CcmpClient::new("s");
        let mut out = Vec::new();
        client.start(request(Method::Info, "z9hG4bK-ccmp-2"), 7, &mut out);
        let timers = armed(&out);
        // Virtual clock: advance to the earliest deadline and fire what is due.
        let (first, _) = *timers.iter().min_by_key(|(_, d)| *d).unwrap();
        let mut out = Vec::new();
        let done = client
            .on_timer(first, &mut out)
            .expect("the deadline ends it");
        assert_eq!(done.purpose, 7);
        assert_eq!(done.result.unwrap_err(), ControlError::Timeout);
        // Timer F is cancelled with the transaction.
        let (f, _) = timers[1];
        assert_eq!(out, [Effect::Cancel(f)]);
        assert!(client.is_empty());
        // The answer that comes after the deadline matches nothing.
        let late = response(200, "OK", "INFO", "z9hG4bK-ccmp-2", "");
        assert!(client.on_response(late, &mut Vec::new()).is_none());
        // Nor does a stale timer.
        assert!(client.on_timer(f, &mut Vec::new()).is_none());
    }

    #[test]
    fn timer_f_alone_also_times_out() {
        let mut client: CcmpClient<()> = CcmpClient::new("s");
        let mut req = request(Method::Options, "z9hG4bK-ccmp-3");
        req.deadline = Duration::from_secs(3600);
        let mut out = Vec::new();
        client.start(req, (), &mut out);
        let (f, d) = armed(&out)[1];
        assert_eq!(d, Duration::from_secs(32));
        let done = client.on_timer(f, &mut Vec::new()).unwrap();
        assert_eq!(done.result.unwrap_err(), ControlError::Timeout);
    }

    #[test]
    fn finals_map_to_ok_gone_and_refused() {
        let mut client: CcmpClient<u8> = CcmpClient::new("s");
        for (i, (status, reason)) in [(200, "OK"), (481, "Gone"), (403, "Forbidden")]
            .into_iter()
            .enumerate()
        {
            let branch = format!("z9hG4bK-ccmp-f{i}");
            let mut out = Vec::new();
            client.start(request(Method::Info, &branch), i as u8, &mut out);
            let timers = armed(&out);
            // A provisional response changes nothing for the caller.
            let trying = response(100, "Trying", "INFO", &branch, "");
            assert!(client.on_response(trying, &mut Vec::new()).is_none());
            let mut out = Vec::new();
            let done = client
                .on_response(response(status, reason, "INFO", &branch, ""), &mut out)
                .unwrap();
            assert_eq!(done.purpose, i as u8);
            match status {
                200 => assert_eq!(done.result.unwrap().status, 200),
                481 => assert_eq!(done.result.unwrap_err(), ControlError::Gone),
                _ => assert_eq!(
                    done.result.unwrap_err(),
                    ControlError::Refused {
                        status: 403,
                        reason: "Forbidden".into()
                    }
                ),
            }
            // Both timers are cancelled.
            let cancelled: Vec<TimerId> = out
                .iter()
                .filter_map(|e| match e {
                    Effect::Cancel(id) => Some(*id),
                    _ => None,
                })
                .collect();
            let mut ids: Vec<TimerId> = timers.iter().map(|(id, _)| *id).collect();
            ids.sort();
            let mut cancelled = cancelled;
            cancelled.sort();
            assert_eq!(cancelled, ids);
        }
        assert!(client.is_empty());
    }

    #[test]
    fn a_refusal_carries_the_ccmp_reason_and_a_2xx_body_is_checked() {
        let mut client: CcmpClient<()> = CcmpClient::new("s");
        let body = CcmpResponse::error("xcon-userid:p@d", "user-update", 409, "moved").to_xml();
        client.start(request(Method::Info, "z9hG4bK-ccmp-r"), (), &mut Vec::new());
        let done = client
            .on_response(
                response(409, "Conflict", "INFO", "z9hG4bK-ccmp-r", &body),
                &mut Vec::new(),
            )
            .unwrap();
        assert_eq!(
            done.result.unwrap_err(),
            ControlError::Refused {
                status: 409,
                reason: "moved".into()
            }
        );
        // A 2xx whose CCMP body says 409 is refused too.
        let ok = response(200, "OK", "INFO", "z9hG4bK-x", &body);
        assert!(matches!(
            ccmp_body("s", &ok),
            Err(ControlError::Refused { status: 409, .. })
        ));
        // Under another secret the signature fails.
        assert!(matches!(
            ccmp_body("other", &ok),
            Err(ControlError::BadSignature(_))
        ));
        // A body that is not CCMP names what is wrong.
        let junk = response(200, "OK", "INFO", "z9hG4bK-y", "<x/>");
        assert!(matches!(
            ccmp_body("s", &junk),
            Err(ControlError::Malformed(_))
        ));
    }

    #[test]
    fn an_invite_uses_the_invite_transaction_and_timer_b() {
        let mut client: CcmpClient<&str> = CcmpClient::new("s");
        let mut out = Vec::new();
        client.start(request(Method::Invite, "z9hG4bK-ccmp-i"), "join", &mut out);
        let (b, d) = armed(&out)[1];
        assert_eq!(d, Duration::from_secs(32), "timer B");
        // A response to another method with the same branch is not ours.
        let other = response(200, "OK", "INFO", "z9hG4bK-ccmp-i", "");
        assert!(client.on_response(other, &mut Vec::new()).is_none());
        let done = client
            .on_response(
                response(200, "OK", "INVITE", "z9hG4bK-ccmp-i", ""),
                &mut Vec::new(),
            )
            .unwrap();
        assert_eq!(done.purpose, "join");
        assert!(done.result.is_ok());
        assert!(client.on_timer(b, &mut Vec::new()).is_none());
    }
}
