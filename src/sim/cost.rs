//! The cost model of the simulator (DESIGN.md §10): how long one server is busy with one
//! SUBSCRIBE or one NOTIFY. Two sources: the built-in `paper` profile, chosen so that the
//! papers' published curves are reproduced, and `calibrated`, measured on the real handlers
//! by `rendezvous sim --calibrate` and kept in `simulations/cost-model.toml`.
//!
//! Service time of a request on a server holding `stored` presence resources:
//! - subscribe: `request_us[protocol] + per_resource_us * resources + per_stored_resource_us * stored`
//! - notify: `request_us[protocol] + per_kb_us * kb + per_stored_resource_us * stored`
//!
//! The `per_stored_resource_us` term is the cost of finding the watched presentities in the
//! server's presence store; it is what made the papers' processing time grow with the users
//! a server holds (their store scanned its resources). The real node uses hash maps, so its
//! calibrated value is near zero.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Costs of one kind of request, in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestCost {
    /// Fixed cost of a SIP request (parse, transaction, dialog, answer).
    pub sip_request_us: f64,
    /// Fixed cost of an XMPP stanza.
    pub xmpp_request_us: f64,
    /// Per presence resource named by the request (subscribe).
    #[serde(default)]
    pub per_resource_us: f64,
    /// Per KB of notification body (notify).
    #[serde(default)]
    pub per_kb_us: f64,
    /// Per presence resource registered on the server handling the request.
    #[serde(default)]
    pub per_stored_resource_us: f64,
}

impl RequestCost {
    /// The service time in microseconds; `size` is resources (subscribe) or KB (notify).
    pub fn service_us(&self, xmpp: bool, resources: u64, kb: f64, stored: u64) -> f64 {
        let request = if xmpp {
            self.xmpp_request_us
        } else {
            self.sip_request_us
        };
        request
            + self.per_resource_us * resources as f64
            + self.per_kb_us * kb
            + self.per_stored_resource_us * stored as f64
    }
}

/// A named cost model: `[subscribe]` and `[notify]` costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostModel {
    /// The profile's name (`paper`, `calibrated`, or a file stem).
    pub name: String,
    /// Where the figures come from (machine, date, command; or how they were chosen).
    #[serde(default)]
    pub source: String,
    /// SUBSCRIBE (XMPP: roster subscribe / presence probe) costs.
    pub subscribe: RequestCost,
    /// NOTIFY (XMPP: presence push) costs.
    pub notify: RequestCost,
}

/// Why a cost model could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CostError {
    /// The file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// Bad TOML, unknown or missing keys.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message (names the key).
        message: String,
    },
    /// A negative or non-finite cost.
    #[error("{path}: {key}: must be a finite number >= 0")]
    Invalid {
        /// The file.
        path: String,
        /// Dotted key.
        key: String,
    },
}

/// Where `calibrated` is read from, relative to the working directory.
pub const CALIBRATED_PATH: &str = "simulations/cost-model.toml";

impl CostModel {
    /// The paper-era profile. See `simulations/README.md` ("The paper profile") for how the
    /// figures were chosen: a fixed part and a part growing with the resources stored on the
    /// server, in the ratio that the papers' single-server curves show, and small enough that
    /// a single server stays far from saturation up to 600 users (the papers' servers did not
    /// collapse).
    pub fn paper() -> CostModel {
        CostModel {
            name: "paper".to_owned(),
            source: "chosen to reproduce the published figures (simulations/README.md)".to_owned(),
            subscribe: RequestCost {
                sip_request_us: 10.0,
                xmpp_request_us: 10.0,
                per_resource_us: 0.5,
                per_kb_us: 0.0,
                per_stored_resource_us: 0.025,
            },
            notify: RequestCost {
                sip_request_us: 2.5,
                xmpp_request_us: 2.5,
                per_resource_us: 0.0,
                per_kb_us: 0.05,
                per_stored_resource_us: 0.005,
            },
        }
    }

    /// Parses a cost model file; `path` only names the file in errors.
    pub fn parse(text: &str, path: &str) -> Result<CostModel, CostError> {
        let model: CostModel = toml::from_str(text).map_err(|e| CostError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        for (section, c) in [("subscribe", &model.subscribe), ("notify", &model.notify)] {
            for (key, v) in [
                ("sip_request_us", c.sip_request_us),
                ("xmpp_request_us", c.xmpp_request_us),
                ("per_resource_us", c.per_resource_us),
                ("per_kb_us", c.per_kb_us),
                ("per_stored_resource_us", c.per_stored_resource_us),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(CostError::Invalid {
                        path: path.to_owned(),
                        key: format!("{section}.{key}"),
                    });
                }
            }
        }
        Ok(model)
    }

    /// Reads a cost model file.
    pub fn load(path: &Path) -> Result<CostModel, CostError> {
        let text = std::fs::read_to_string(path).map_err(|e| CostError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        CostModel::parse(&text, &path.display().to_string())
    }

    /// The TOML text of the model, after `header` as `#` comment lines.
    pub fn to_toml(&self, header: &str) -> String {
        let mut out = String::new();
        for line in header.lines() {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&toml::to_string(self).expect("a cost model serialises"));
        out
    }

    /// A profile by name: `paper`, `calibrated` (from [`CALIBRATED_PATH`] under `base`), or
    /// a file path (relative paths under `base`).
    pub fn profile(name: &str, base: &Path) -> Result<CostModel, CostError> {
        match name {
            "paper" => Ok(CostModel::paper()),
            "calibrated" => CostModel::load(&base.join(CALIBRATED_PATH)),
            file => CostModel::load(&base.join(file)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_toml() {
        let mut m = CostModel::paper();
        m.name = "x".into();
        m.subscribe.per_resource_us = 0.123_456_789;
        m.notify.per_kb_us = 1e-3;
        let text = m.to_toml("measured here\nand now");
        assert!(text.starts_with("# measured here\n# and now\n"), "{text}");
        assert_eq!(CostModel::parse(&text, "f").unwrap(), m);
    }

    #[test]
    fn bad_values_name_the_key() {
        let text = CostModel::paper()
            .to_toml("")
            .replace("per_kb_us = 0.05", "per_kb_us = -1.0");
        match CostModel::parse(&text, "f") {
            Err(CostError::Invalid { key, .. }) => assert_eq!(key, "notify.per_kb_us"),
            other => panic!("{other:?}"),
        }
        let e = CostModel::parse("name = \"x\"\n", "f").unwrap_err();
        assert!(e.to_string().contains("subscribe"), "{e}");
    }

    #[test]
    fn service_time_adds_its_parts() {
        let c = RequestCost {
            sip_request_us: 10.0,
            xmpp_request_us: 5.0,
            per_resource_us: 1.0,
            per_kb_us: 2.0,
            per_stored_resource_us: 0.5,
        };
        assert_eq!(c.service_us(false, 3, 4.0, 10), 10.0 + 3.0 + 8.0 + 5.0);
        assert_eq!(c.service_us(true, 0, 0.0, 0), 5.0);
    }

    #[test]
    fn profiles_by_name_and_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            CostModel::profile("paper", dir.path()).unwrap(),
            CostModel::paper()
        );
        assert!(CostModel::profile("calibrated", dir.path()).is_err());
        std::fs::write(dir.path().join("m.toml"), CostModel::paper().to_toml("h")).unwrap();
        assert_eq!(
            CostModel::profile("m.toml", dir.path()).unwrap().name,
            "paper"
        );
    }
}
