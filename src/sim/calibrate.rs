//! `rendezvous sim --calibrate` (DESIGN.md §10): the `calibrated` cost model, measured by
//! micro-benchmarking the node's own pure code paths with `std::time::Instant` (many
//! iterations per batch, the median of several batches):
//!
//! - SIP request: build a SUBSCRIBE (or NOTIFY) with [`RequestBuilder`], parse it with
//!   [`message::parse`], build the `200 OK` with [`message::reply`];
//! - XMPP request: feed a `<presence/>` stanza to the [`StreamParser`] and read it with
//!   [`read_stanza`], then serialise the answer;
//! - per resource (subscribe): one watched presentity's PIDF document built and written
//!   ([`Presence::to_xml`], the initial NOTIFY body) and a watcher entry inserted;
//! - per KB (notify): the slope of [`Presence::to_xml`] + [`Presence::parse`] between a
//!   4 KB and a 64 KB document;
//! - per stored resource: the slope of a watcher lookup between a store of 1,000 and one of
//!   200,000 entries (hash maps: near zero).
//!
//! The numbers are for the handlers' CPU work on one core, without sockets, actors or
//! the store: a lower bound of the live node's cost.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use crate::pidf::xmpp::read_stanza;
use crate::pidf::{Basic, Contact, Note, Presence, Tuple};
use crate::sip::message::{self, Limits, Method, RequestBuilder};
use crate::xmpp::stream::{ParserLimits, StreamEvent, StreamParser};

use super::cost::{CostModel, RequestCost};

/// Batches per measurement; the median is kept.
const BATCHES: usize = 9;

/// Median time per iteration (µs) of `f`, over [`BATCHES`] batches of `iterations`.
fn median_us(iterations: u32, mut f: impl FnMut(u32)) -> f64 {
    let mut times: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for i in 0..iterations {
                f(i);
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[BATCHES / 2]
}

fn sip_request(method: Method, i: u32, body: Option<&str>) -> bytes::Bytes {
    let mut b = RequestBuilder::new(method, "sip:bob@example.com")
        .header(
            "Via",
            format!("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{i:08x}"),
        )
        .header("From", "<sip:alice@example.com>;tag=a1")
        .header("To", "<sip:bob@example.com>")
        .header("Call-ID", format!("c{i}@192.0.2.1"))
        .header("CSeq", format!("{} SUBSCRIBE", i + 1))
        .header("Contact", "<sip:alice@192.0.2.1:5060>")
        .header("Event", "presence")
        .header("Expires", "3600");
    if let Some(body) = body {
        b = b.body("application/pidf+xml", body.to_owned());
    }
    b.build()
}

/// Builds, parses and answers one SIP request.
fn sip_round(method: Method, i: u32, body: Option<&str>) {
    let limits = Limits {
        max_message_bytes: 1 << 20,
    };
    let bytes = sip_request(method, i, body);
    if let Ok(message::Message::Request(req)) = message::parse(&bytes, &limits) {
        black_box(message::reply(&req, 200, "OK").to_tag("b1").build());
    }
}

fn doc(entity: &str, tuples: usize, note_bytes: usize) -> Presence {
    Presence {
        entity: entity.to_owned(),
        tuples: (0..tuples)
            .map(|t| Tuple {
                id: format!("t{t}"),
                basic: Some(Basic::Open),
                status_extensions: Vec::new(),
                contact: Some(Contact {
                    uri: format!("sip:{entity}-{t}@example.com"),
                    priority: Some(0.8),
                }),
                notes: vec![Note {
                    text: "x".repeat(note_bytes),
                    lang: None,
                }],
                timestamp: Some("2024-01-01T00:00:00Z".to_owned()),
                extensions: Vec::new(),
            })
            .collect(),
        ..Presence::default()
    }
}

/// Time (µs) to write and read back a document of about `kb` KB; returns (µs, real KB).
fn pidf_round_us(kb: usize) -> (f64, f64) {
    let d = doc("pres:alice@example.com", kb, 900);
    let size = d.to_xml().len() as f64 / 1024.0;
    let iterations = (2_000 / kb.max(1)).max(20) as u32;
    let t = median_us(iterations, |_| {
        let xml = black_box(&d).to_xml();
        black_box(Presence::parse(xml.as_bytes()).ok());
    });
    (t, size)
}

fn xmpp_round(parser: &mut StreamParser, i: u32) {
    let stanza = format!(
        "<presence from='alice@example.com/r{i}' to='bob@example.com'><show>away</show>\
         <status>in a meeting</status><priority>5</priority></presence>"
    );
    if parser.push(stanza.as_bytes()).is_ok() {
        if let Ok(Some(StreamEvent::Stanza(el))) = parser.next_event() {
            let p = read_stanza("r", &el);
            black_box(&p);
            black_box(el.to_xml("jabber:client"));
        }
    }
}

/// Measures the cost model; `say` hears what is being measured.
pub fn measure(say: &mut dyn FnMut(&str)) -> CostModel {
    say("SIP SUBSCRIBE build + parse + 200");
    let sip_subscribe = median_us(2_000, |i| sip_round(Method::Subscribe, i, None));
    say("XMPP presence stanza parse + read + write");
    let mut parser = StreamParser::new(ParserLimits::default());
    let _ = parser.push(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
          xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>",
    );
    let _ = parser.next_event();
    let xmpp_request = median_us(2_000, |i| xmpp_round(&mut parser, i));
    say("per resource: one presentity's PIDF + watcher entry");
    let one = doc("pres:carol@example.com", 1, 20);
    let mut watchers: HashMap<String, u32> = HashMap::new();
    let per_resource = median_us(5_000, |i| {
        black_box(one.to_xml());
        watchers.insert(format!("w{}", i % 4096), i);
    });
    say("per KB: PIDF write + parse at 4 KB and 64 KB");
    let (t4, kb4) = pidf_round_us(4);
    let (t64, kb64) = pidf_round_us(64);
    let per_kb = ((t64 - t4) / (kb64 - kb4)).max(0.0);
    say("SIP NOTIFY build + parse + 200 (small body)");
    let small = doc("pres:carol@example.com", 1, 20).to_xml();
    let sip_notify = median_us(2_000, |i| sip_round(Method::Notify, i, Some(&small)));
    let xmpp_notify = median_us(2_000, |i| {
        let el = crate::xml::Element::new("presence", "jabber:client")
            .with_attr("from", "carol@example.com/r")
            .with_attr("to", format!("bob@example.com/{i}"))
            .with_child(crate::xml::Element::new("status", "jabber:client").with_text("here"));
        black_box(el.to_xml("jabber:client"));
    });
    say("per stored resource: watcher lookup at 1,000 and 200,000 entries");
    let lookup = |n: u32| {
        let map: HashMap<String, u32> = (0..n)
            .map(|i| (format!("pres:u{i}@example.com"), i))
            .collect();
        let keys: Vec<String> = (0..1024u32)
            .map(|i| format!("pres:u{}@example.com", (i * 7919) % n))
            .collect();
        median_us(20_000, |i| {
            black_box(map.get(&keys[(i % 1024) as usize]));
        })
    };
    let (small_n, big_n) = (1_000u32, 200_000u32);
    let per_stored = ((lookup(big_n) - lookup(small_n)) / f64::from(big_n - small_n)).max(0.0);
    CostModel {
        name: "calibrated".to_owned(),
        source: "rendezvous sim --calibrate (src/sim/calibrate.rs)".to_owned(),
        subscribe: RequestCost {
            sip_request_us: round(sip_subscribe),
            xmpp_request_us: round(xmpp_request),
            per_resource_us: round(per_resource),
            per_kb_us: 0.0,
            per_stored_resource_us: round(per_stored),
        },
        notify: RequestCost {
            sip_request_us: round(sip_notify),
            xmpp_request_us: round(xmpp_notify),
            per_resource_us: 0.0,
            per_kb_us: round(per_kb),
            per_stored_resource_us: round(per_stored),
        },
    }
}

/// Four significant digits: the measurement is not more precise, and the file stays
/// readable.
fn round(v: f64) -> f64 {
    if v <= 0.0 {
        return 0.0;
    }
    let scale = 10f64.powi(3 - v.log10().floor() as i32);
    (v * scale).round() / scale
}

/// The comment header of `simulations/cost-model.toml`: machine, date, command.
pub fn header() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown host".to_owned());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let profile = if cfg!(debug_assertions) {
        "debug build (use --release for real figures)"
    } else {
        "release build"
    };
    format!(
        "Cost model of the real handlers, measured by `rendezvous sim --calibrate`\n\
         ({profile}) on {host}: {cpu}, {cores} cores, at {} (UTC).\n\
         Microseconds of one core per request; see src/sim/cost.rs for the formula.",
        utc(secs)
    )
}

/// `YYYY-MM-DD HH:MM` (UTC) of a Unix time, formatted by the `time` crate; a time it cannot
/// represent (past year 9999) gives the epoch.
fn utc(secs: u64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(FORMAT)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_rounding() {
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(1_709_210_096), "2024-02-29 12:34");
        assert_eq!(round(12.345_67), 12.35);
        assert_eq!(round(0.000_123_456), 0.000_123_5);
        assert_eq!(round(-1.0), 0.0);
    }

    #[test]
    fn the_measured_paths_do_real_work() {
        // The benchmarked requests parse: a broken path would measure nothing.
        let bytes = sip_request(Method::Subscribe, 1, None);
        let limits = Limits {
            max_message_bytes: 1 << 20,
        };
        assert!(matches!(
            message::parse(&bytes, &limits),
            Ok(message::Message::Request(_))
        ));
        let d = doc("pres:a@example.com", 8, 900);
        let xml = d.to_xml();
        assert!(xml.len() > 7 * 1024, "{}", xml.len());
        assert_eq!(Presence::parse(xml.as_bytes()).unwrap().tuples.len(), 8);
        let mut parser = StreamParser::new(ParserLimits::default());
        parser
            .push(
                b"<stream:stream xmlns='jabber:client' \
                  xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>",
            )
            .unwrap();
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Open(_)))
        ));
        parser
            .push(b"<presence><show>away</show></presence>")
            .unwrap();
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Stanza(_)))
        ));
    }
}
