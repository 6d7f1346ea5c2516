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
        /// Which [[node]] entry to run (default: the primary).
        #[arg(long)]
        id: Option<String>,
    },
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
    use crate::admin::{execute, Request};
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
    let response = match crate::node::open_store(node) {
        Ok(store) => execute(
            request,
            &*store,
            None,
            &crate::accounts::CredentialPolicy::from_config(&config),
        ),
        // The node is running: ask it over its operator socket.
        Err(crate::node::NodeError::Store(crate::store::StoreError::Locked(_))) => {
            crate::admin::request(&node.data_dir(), &request)?
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

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Node { config, id } => Config::load(config.as_deref())
            .map_err(|e| e.to_string())
            .and_then(|c| crate::node::run(c, id.as_deref()).map_err(|e| e.to_string())),
        Command::User { config, id, action } => user_command(config, id, action),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
