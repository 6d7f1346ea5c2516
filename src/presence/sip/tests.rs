//! The SIP part driven without actix: requests in, effects out, on a virtual clock.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;

use super::super::testkit::{answer, request, sip, World};
use super::state::{Neighbours, SipFx, SipIo, SipState};
use crate::sip::message::{Message, Method, Request, RequestBuilder};
use crate::sip::transport::Peer;
use crate::xmpp::subscription::Subscription;

/// The other parts, as the SIP part sees them.
#[derive(Default)]
struct Nb {
    subs: HashMap<(String, String), Subscription>,
    remote: HashMap<String, Bytes>,
}

impl Neighbours for Nb {
    fn subscription(&self, user: &str, jid: &str) -> Option<Subscription> {
        self.subs.get(&(user.to_string(), jid.to_string())).copied()
    }

    fn remote_body(&self, presentity: &str) -> Option<Bytes> {
        self.remote.get(presentity).cloned()
    }
}

/// One step of the part: its result and its effects.
fn step<R>(
    w: &World,
    nb: &Nb,
    sip: &mut SipState,
    f: impl FnOnce(&mut SipState, &mut SipIo<'_>) -> R,
) -> (R, Vec<SipFx>) {
    let cx = w.cx();
    let mut io = SipIo {
        cx: &cx,
        nb,
        fx: Vec::new(),
    };
    let r = f(sip, &mut io);
    (r, io.fx)
}

/// What the effects sent, parsed.
fn sent(fx: &[SipFx]) -> Vec<Message> {
    fx.iter()
        .filter_map(|e| match e {
            SipFx::Send { bytes, .. } => Some(sip(bytes)),
            _ => None,
        })
        .collect()
}

fn watcher() -> Peer {
    Peer::Tcp("198.51.100.7:5060".parse().unwrap())
}

/// bob's SUBSCRIBE to alice's presence.
fn subscribe(cseq: u32, to_tag: Option<&str>, expires: u32) -> Request {
    let to = match to_tag {
        Some(t) => format!("<sip:alice@example.com>;tag={t}"),
        None => "<sip:alice@example.com>".to_string(),
    };
    let bytes = RequestBuilder::new(Method::Subscribe, "sip:alice@example.com")
        .header(
            "Via",
            format!("SIP/2.0/TCP 198.51.100.7:5060;branch=z9hG4bK-ua{cseq}"),
        )
        .header("Max-Forwards", "70")
        .header("From", "<sip:bob@example.com>;tag=bob1")
        .header("To", to)
        .header("Call-ID", "call-1@198.51.100.7")
        .header("CSeq", format!("{cseq} SUBSCRIBE"))
        .header("Contact", "<sip:bob@198.51.100.7:5060;transport=tcp>")
        .header("Event", "presence")
        .header("Expires", expires.to_string())
        .build();
    request(&bytes)
}

/// A request through its server transaction and the part that serves it, as the shard
/// does for a SUBSCRIBE (the first NOTIFY of a new subscription included).
fn serve(w: &World, nb: &Nb, s: &mut SipState, req: &Request) -> Vec<SipFx> {
    let (_, fx) = step(w, nb, s, |s, io| {
        let (key, peer) = s.accept(io, req, watcher()).expect("a new transaction");
        if let Some(new) = s.subscribe(io, &key, req, peer) {
            s.first_notify(io, new);
        }
    });
    fx
}

/// A world where bob (online as nobody) watches alice, online with `status`.
fn world(status: &str) -> World {
    let w = World::new();
    w.account("alice");
    w.account("bob");
    presence(&w, status);
    w
}

fn presence(w: &World, status: &str) {
    w.routes.set("alice", Vec::new());
    let p = format!("<presence from='alice@example.com/home'><status>{status}</status></presence>");
    w.online("alice", "home", Some(&p));
}

/// The NOTIFY among `msgs`, and the status of the response among them, if any.
fn split(msgs: Vec<Message>) -> (Option<u16>, Vec<Request>) {
    let mut status = None;
    let mut notifies = Vec::new();
    for m in msgs {
        match m {
            Message::Response(r) => status = Some(r.status),
            Message::Request(r) => {
                assert_eq!(*r.method(), Method::Notify);
                notifies.push(r);
            }
        }
    }
    (status, notifies)
}

fn body(r: &Request) -> String {
    String::from_utf8_lossy(r.body()).into_owned()
}

/// The To tag the `200` to a SUBSCRIBE gave the dialog.
fn dialog_tag(fx: &[SipFx]) -> String {
    sent(fx)
        .into_iter()
        .find_map(|m| match m {
            Message::Response(r) => r.base.to.tag().map(str::to_string),
            _ => None,
        })
        .expect("a 200 with a To tag")
}

/// The watcher answers a NOTIFY.
fn answer_notify(
    w: &World,
    nb: &Nb,
    s: &mut SipState,
    notify: &Request,
    status: u16,
) -> Vec<SipFx> {
    let resp = answer(notify, status, "bob1", &[]);
    step(w, nb, s, |s, io| s.response(io, &resp)).1
}

#[test]
fn subscribe_is_answered_200_and_notified_at_once_rfc6665_4_2_1() {
    let w = world("at my desk");
    let nb = Nb::default();
    let mut s = SipState::default();
    let fx = serve(&w, &nb, &mut s, &subscribe(1, None, 600));
    let (status, notifies) = split(sent(&fx));
    assert_eq!(status, Some(200));
    assert_eq!(notifies.len(), 1, "the first NOTIFY goes out at once");
    let n = &notifies[0];
    let state = n.header("Subscription-State").unwrap();
    assert!(state.starts_with("active"), "{state}");
    assert_eq!(n.header("Event"), Some("presence"));
    assert!(body(n).contains("at my desk"), "{}", body(n));
    assert!(s.has_watchers("alice"));
}

#[test]
fn refresh_is_answered_and_notified_rfc6665_4_2_1_2() {
    let mut w = world("here");
    let nb = Nb::default();
    let mut s = SipState::default();
    let fx = serve(&w, &nb, &mut s, &subscribe(1, None, 600));
    let tag = dialog_tag(&fx);
    let (_, first) = split(sent(&fx));
    answer_notify(&w, &nb, &mut s, &first[0], 200);
    w.advance(Duration::from_secs(500));
    let fx = serve(&w, &nb, &mut s, &subscribe(2, Some(&tag), 600));
    let (status, notifies) = split(sent(&fx));
    assert_eq!(status, Some(200));
    assert_eq!(notifies.len(), 1);
    assert!(notifies[0]
        .header("Subscription-State")
        .unwrap()
        .starts_with("active"));
    assert!(notifies[0].base.cseq.seq > first[0].base.cseq.seq);
    answer_notify(&w, &nb, &mut s, &notifies[0], 200);
    // The refresh moved the expiry: past the first one, the dialog lives on.
    w.advance(Duration::from_secs(200));
    step(&w, &nb, &mut s, |s, io| s.timers_due(io));
    assert!(s.has_watchers("alice"));
}

#[test]
fn unsubscribe_gets_a_final_notify_and_ends_the_dialog_rfc6665_4_2_1_4() {
    let w = world("here");
    let nb = Nb::default();
    let mut s = SipState::default();
    let fx = serve(&w, &nb, &mut s, &subscribe(1, None, 600));
    let tag = dialog_tag(&fx);
    let (_, first) = split(sent(&fx));
    answer_notify(&w, &nb, &mut s, &first[0], 200);
    let fx = serve(&w, &nb, &mut s, &subscribe(2, Some(&tag), 0));
    let (status, notifies) = split(sent(&fx));
    assert_eq!(status, Some(200));
    assert_eq!(notifies.len(), 1);
    let state = notifies[0].header("Subscription-State").unwrap();
    assert!(state.starts_with("terminated"), "{state}");
    assert!(!s.has_watchers("alice"));
    assert!(fx
        .iter()
        .any(|e| matches!(e, SipFx::WatchGone(p) if p == "alice")));
}

#[test]
fn notifies_are_rate_limited_and_coalesced_rfc6665_4_2_2() {
    let mut w = world("zero");
    let nb = Nb::default();
    let mut s = SipState::default();
    let fx = serve(&w, &nb, &mut s, &subscribe(1, None, 600));
    let (_, first) = split(sent(&fx));
    answer_notify(&w, &nb, &mut s, &first[0], 200);

    presence(&w, "one");
    let (_, fx) = step(&w, &nb, &mut s, |s, io| {
        s.xmpp_presence_changed(io, "alice")
    });
    let (_, notifies) = split(sent(&fx));
    assert_eq!(notifies.len(), 1, "the first change goes out at once");
    assert!(body(&notifies[0]).contains("one"));
    answer_notify(&w, &nb, &mut s, &notifies[0], 200);

    // Within `notify_min_interval_ms` (200 ms): nothing goes out...
    for (status, after) in [("two", 50), ("three", 50)] {
        w.advance(Duration::from_millis(after));
        presence(&w, status);
        let (_, fx) = step(&w, &nb, &mut s, |s, io| {
            s.xmpp_presence_changed(io, "alice")
        });
        assert!(sent(&fx).is_empty(), "{status} waits for the rate limit");
    }
    // ...then one NOTIFY with the latest state.
    w.advance(Duration::from_millis(99));
    let (_, fx) = step(&w, &nb, &mut s, |s, io| s.timers_due(io));
    assert!(sent(&fx).is_empty(), "not before the interval");
    w.advance(Duration::from_millis(1));
    let (_, fx) = step(&w, &nb, &mut s, |s, io| s.timers_due(io));
    let (_, notifies) = split(sent(&fx));
    assert_eq!(notifies.len(), 1, "the changes are coalesced");
    assert!(body(&notifies[0]).contains("three"));
    assert!(!body(&notifies[0]).contains("two"));
}

#[test]
fn notify_answered_481_removes_the_subscription_rfc6665_4_2_2() {
    let w = world("here");
    let nb = Nb::default();
    let mut s = SipState::default();
    let fx = serve(&w, &nb, &mut s, &subscribe(1, None, 600));
    let (_, first) = split(sent(&fx));
    assert!(s.has_watchers("alice"));
    let fx = answer_notify(&w, &nb, &mut s, &first[0], 481);
    assert!(!s.has_watchers("alice"));
    assert!(fx
        .iter()
        .any(|e| matches!(e, SipFx::WatchGone(p) if p == "alice")));
    // Later changes reach nobody.
    let (_, fx) = step(&w, &nb, &mut s, |s, io| {
        s.xmpp_presence_changed(io, "alice")
    });
    assert!(sent(&fx).is_empty());
}

#[test]
fn a_presentity_homed_elsewhere_shows_what_its_home_sent_design_8() {
    let w = World::clustered();
    w.view.as_ref().unwrap().set_home("alice", "n2");
    w.account("bob");
    let mut nb = Nb::default();
    // Before the home's first NOTIFY the state is not known: a NOTIFY without a body.
    nb.remote.insert("alice".into(), Bytes::new());
    let mut s = SipState::default();
    let fx = serve(&w, &nb, &mut s, &subscribe(1, None, 600));
    let (status, notifies) = split(sent(&fx));
    assert_eq!(status, Some(200));
    assert!(notifies[0].body().is_empty());
    answer_notify(&w, &nb, &mut s, &notifies[0], 200);
    // Then what the home composed, as it sent it.
    let doc = "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:alice@example.com'/>";
    nb.remote.insert("alice".into(), Bytes::from(doc));
    let (_, fx) = step(&w, &nb, &mut s, |s, io| s.notify_watchers(io, "alice"));
    let (_, notifies) = split(sent(&fx));
    assert_eq!(body(&notifies[0]), doc);
}

#[test]
fn roster_policy_keeps_an_unapproved_watcher_pending_and_asks_rfc6665_4_2_1_2() {
    let mut w = world("here");
    w.settings.sip.presence_policy = crate::config::PresencePolicy::Roster;
    let mut nb = Nb::default();
    let mut s = SipState::default();
    let fx = serve(&w, &nb, &mut s, &subscribe(1, None, 600));
    let (_, notifies) = split(sent(&fx));
    let state = notifies[0].header("Subscription-State").unwrap();
    assert!(state.starts_with("pending"), "{state}");
    assert!(notifies[0].body().is_empty(), "no state while pending");
    assert!(fx.iter().any(|e| matches!(
        e,
        SipFx::AskPresentity { watcher, presentity } if watcher == "bob" && presentity == "alice"
    )));
    answer_notify(&w, &nb, &mut s, &notifies[0], 200);
    // alice approves: the watcher becomes active and sees her.
    nb.subs.insert(
        ("alice".into(), "bob@example.com".into()),
        Subscription::From,
    );
    let (_, fx) = step(&w, &nb, &mut s, |s, io| s.reauthorize(io, "alice"));
    let (_, notifies) = split(sent(&fx));
    assert_eq!(notifies.len(), 1);
    assert!(notifies[0]
        .header("Subscription-State")
        .unwrap()
        .starts_with("active"));
    assert!(body(&notifies[0]).contains("here"));
}

#[test]
fn a_request_no_part_serves_gets_405() {
    let w = world("here");
    let nb = Nb::default();
    let mut s = SipState::default();
    let bytes = RequestBuilder::new(Method::Refer, "sip:alice@example.com")
        .header("Via", "SIP/2.0/TCP 198.51.100.7:5060;branch=z9hG4bK-r1")
        .header("From", "<sip:bob@example.com>;tag=b")
        .header("To", "<sip:alice@example.com>")
        .header("Call-ID", "c-refer")
        .header("CSeq", "1 REFER")
        .build();
    let req = request(&bytes);
    let (_, fx) = step(&w, &nb, &mut s, |s, io| {
        let (key, _) = s.accept(io, &req, watcher()).unwrap();
        s.unserved(io, &key, &req);
    });
    let msgs = sent(&fx);
    assert!(matches!(&msgs[..], [Message::Response(r)] if r.status == 405));
}
