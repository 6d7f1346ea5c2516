//! Command line (DESIGN.md §1): `rendezvous node` runs a node, `rendezvous user …` manages
//! accounts in the node's store.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// Rendezvous: a presence cluster that speaks XMPP and SIP.
#[derive(Parser, Debug)]
#[command(name = "rendezvous", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node (single-node defaults when there is no cluster.toml).
    Node {
        /// Configuration file (default: ./cluster.toml if present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Which [[node]] or [[pool]] entry to run (default: the primary).
        #[arg(long)]
        id: Option<String>,
        /// INVITE this primary (`sip:host:port`) at start and become an active member.
        #[arg(long)]
        join: Option<String>,
    },
    /// Talk to a running cluster through the primary's admin API.
    Ctl {
        /// Configuration file (default: ./cluster.toml if present).
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// Admin API address (default: the primary's `admin` from the configuration).
        #[arg(long, global = true)]
        admin: Option<String>,
        #[command(subcommand)]
        action: CtlAction,
    },
    /// Virtual XMPP and SIP users against a server or a cluster: logins, presence
    /// deliveries and latency, SIP transaction rates.
    ///
    /// Users `first .. first+users-1` are named from --pattern; the first
    /// `users - round(users * sip-share)` are XMPP users, the rest SIP users. Phases:
    /// register, login, roster setup, hold, warm-up, measure (or ramp steps), logout. A
    /// human summary goes to stdout, progress to stderr, the JSON summary to --json. Exit
    /// status: 0 when the run completed (errors are counted), 2 on bad options, 1 when
    /// nothing could be done.
    Loadgen(Box<crate::loadgen::Options>),
    /// Seeded discrete-event simulation of scenarios (`simulations/*.toml`, DESIGN.md §10)
    /// with the real allocator: mean subscribe and notify processing times, single vs
    /// multi, beside the published figures; CSV and SVG under --out. Exit status 0 on
    /// success, 2 on a bad scenario or option (the message names the key).
    Sim(crate::sim::command::SimArgs),
    /// Drive a live cluster with virtual users from a simulation scenario, time-compressed
    /// and scaled, beside the simulator's prediction (DESIGN.md §10).
    ///
    /// Users arrive as the scenario's steps (or curve) say, log in at the primary and follow
    /// its redirects; every online user SUBSCRIBEs at the scenario's rate × --compress. The
    /// primary's admin API is sampled every 250 ms. Writes <out>/<name>.csv,
    /// <name>-steps.csv and <name>.svg, and --json. Exit status: 0 when the run completed,
    /// 1 on failures with --fail-on-errors (or when it could not run), 2 on bad options or
    /// scenario.
    Replay(Box<crate::replay::Options>),
    /// Manage accounts in the store of a node (stop the node first).
    User {
        /// Configuration file (default: ./cluster.toml if present).
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// Which [[node]] entry's store (default: the primary).
        #[arg(long, global = true)]
        id: Option<String>,
        #[command(subcommand)]
        action: UserAction,
    },
}

#[derive(Subcommand, Debug)]
enum CtlAction {
    /// Servers, their loads and users, and the pool.
    Status,
    /// The cluster state document as JSON (`GET /api/cluster`).
    State,
    /// One node's own figures as JSON (`GET /api/node`; use --admin to pick the node).
    Node,
    /// Take a configured [[node]] or [[pool]] entry into the cluster.
    AddNode {
        /// The entry's id.
        id: String,
    },
    /// End a node's membership (its users are placed anew at their next login).
    RemoveNode {
        /// The node id.
        id: String,
    },
    /// Move a node's users to the other servers, then end its membership (and run its
    /// `stop` command if it is a [[pool]] entry with one).
    Drain {
        /// The node id.
        id: String,
    },
}

fn ctl_command(
    config: Option<PathBuf>,
    admin: Option<String>,
    action: CtlAction,
) -> Result<(), String> {
    use crate::control::admin::call;
    let admin = match admin {
        Some(a) => a,
        None => {
            let config = Config::load(config.as_deref()).map_err(|e| e.to_string())?;
            config.primary_node().admin.to_string()
        }
    };
    let out = match action {
        CtlAction::Status => {
            let json = call(&admin, "GET", "/api/cluster", None)?;
            let state: crate::cluster::state::ClusterState =
                serde_json::from_str(&json).map_err(|e| format!("bad answer: {e}"))?;
            status_text(&state)
        }
        CtlAction::State => call(&admin, "GET", "/api/cluster", None)?,
        CtlAction::Node => call(&admin, "GET", "/api/node", None)?,
        CtlAction::AddNode { id } => {
            let body = serde_json::json!({ "id": id }).to_string();
            call(&admin, "POST", "/api/nodes", Some(body.as_bytes()))?
        }
        CtlAction::RemoveNode { id } => call(&admin, "DELETE", &format!("/api/nodes/{id}"), None)?,
        CtlAction::Drain { id } => call(&admin, "POST", &format!("/api/nodes/{id}/drain"), None)?,
    };
    println!("{}", out.trim_end());
    Ok(())
}

/// A human summary of the cluster state document.
fn status_text(state: &crate::cluster::state::ClusterState) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} active server(s), {} user(s) in the directory",
        state.active, state.total_users
    );
    let _ = writeln!(
        out,
        "{:<16} {:>8} {:>8} {:>8} {:>8}",
        "server", "load", "max", "homed", "online"
    );
    for s in &state.servers {
        let users = state.users.iter().filter(|u| u.server_id == s.id);
        let homed: usize = users.clone().map(|u| u.users.len()).sum();
        let online: usize = users
            .map(|u| u.users.iter().filter(|i| i.pres_info == "open").count())
            .sum();
        let _ = writeln!(
            out,
            "{:<16} {:>8} {:>8} {:>8} {:>8}",
            s.id, s.current, s.max, homed, online
        );
    }
    if !state.candidates.is_empty() {
        let _ = writeln!(out, "pool: {}", state.candidates.join(", "));
    }
    out
}

#[derive(Subcommand, Debug)]
enum UserAction {
    /// Create an account.
    Add {
        /// Local part of the JID (alice for alice@domain).
        name: String,
        /// Password; read from standard input when omitted.
        #[arg(long)]
        password: Option<String>,
    },
    /// Delete an account and everything stored for it.
    Del {
        /// Local part of the JID.
        name: String,
    },
    /// Change a password.
    Passwd {
        /// Local part of the JID.
        name: String,
        /// New password; read from standard input when omitted.
        #[arg(long)]
        password: Option<String>,
    },
    /// List accounts.
    List,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn read_password(given: Option<String>) -> Result<String, String> {
    if let Some(p) = given {
        return Ok(p);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password: {e}"))?;
    let p = line.trim_end_matches(['\r', '\n']).to_string();
    if p.is_empty() {
        return Err("the password must not be empty".into());
    }
    Ok(p)
}

fn user_command(
    config: Option<PathBuf>,
    id: Option<String>,
    action: UserAction,
) -> Result<(), String> {
    use crate::control::operator::{execute, Request};
    let config = Config::load(config.as_deref()).map_err(|e| e.to_string())?;
    let node = config.node(id.as_deref()).map_err(|e| e.to_string())?;
    let request = match action {
        UserAction::Add { name, password } => Request::Add {
            name,
            password: read_password(password)?,
        },
        UserAction::Del { name } => Request::Del { name },
        UserAction::Passwd { name, password } => Request::Passwd {
            name,
            password: read_password(password)?,
        },
        UserAction::List => Request::List,
    };
    let response = match crate::node::open_store(&node) {
        Ok(store) => execute(
            request,
            &*store,
            None,
            &crate::accounts::CredentialPolicy::from_config(&config),
        ),
        // The node is running: ask it over its operator socket.
        Err(crate::node::NodeError::Store(crate::store::StoreError::Locked(_))) => {
            crate::control::operator::request(&node.data_dir(), &request)?
        }
        Err(e) => return Err(e.to_string()),
    };
    if response.ok {
        if !response.message.is_empty() {
            println!("{}", response.message);
        }
        Ok(())
    } else {
        Err(response.message)
    }
}

/// `rendezvous loadgen`: exit status 0 when the run completed (errors counted in the
/// summary), 2 on bad options, 1 when nothing could be done.
fn loadgen_command(options: crate::loadgen::Options) -> ExitCode {
    use crate::loadgen::{run, Settings};
    let settings = match Settings::new(options) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    match run(settings) {
        Ok(summary) => {
            print!("{}", summary.human());
            ExitCode::from(summary.exit_code())
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `rendezvous replay`: the one-line summary on stdout; exit status as documented on
/// the subcommand.
fn replay_command(options: crate::replay::Options) -> ExitCode {
    let fail_on_errors = options.fail_on_errors;
    match crate::replay::run(options) {
        Ok(report) => {
            println!("{}", report.line());
            if fail_on_errors && (report.failures_total > 0 || report.counters.logins_ok == 0) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Node { config, id, join } => {
            let join = match join.as_deref() {
                None => Ok(None),
                Some(uri) => crate::config::parse_sip_hostport(uri)
                    .map(Some)
                    .ok_or_else(|| format!("--join: \"{uri}\" is not a sip:ip:port URI")),
            };
            join.and_then(|join| {
                Config::load(config.as_deref())
                    .map_err(|e| e.to_string())
                    .and_then(|c| {
                        crate::node::run(c, id.as_deref(), join).map_err(|e| e.to_string())
                    })
            })
        }
        Command::Ctl {
            config,
            admin,
            action,
        } => ctl_command(config, admin, action),
        Command::User { config, id, action } => user_command(config, id, action),
        Command::Loadgen(options) => return loadgen_command(*options),
        Command::Sim(args) => return crate::sim::command::run(args),
        Command::Replay(options) => return replay_command(*options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
