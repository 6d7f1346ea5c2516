-- Prosody 0.12 (Debian 12 package) for scripts/bench.sh --peers.
-- scripts/bench.sh copies this file into a temp dir, replacing @DATA@ (that dir), @PORT@
-- (c2s port, 25222) and @DOMAIN@ (bench.test), and runs `prosody -F --config <copy>` pinned
-- to core 0. Nothing here touches /etc/prosody or /var/lib/prosody.
--
-- Same rules as every server in the bench: plain TCP on loopback, SASL SCRAM-SHA-256 (PLAIN
-- allowed without TLS on loopback), open in-band registration, rosters and presence kept,
-- everything not needed for presence left out. Non-default settings, and why:

-- Foreground, as root, data in the temp dir: started and stopped by bench.sh only.
daemonize = false
run_as_root = true
pidfile = "@DATA@/prosody.pid"
data_path = "@DATA@"
log = { warn = "@DATA@/prosody.log" }
certificates = "@DATA@"  -- none there: no TLS; keeps the default dir from being scanned

-- Loopback ports of its own; no s2s, no HTTP, no components.
interfaces = { "127.0.0.1" }
c2s_ports = { @PORT@ }
c2s_direct_tls_ports = {}
s2s_ports = {}
http_ports = {}
https_ports = {}
component_ports = {}

-- No TLS: STARTTLS is not required and, without a certificate, not offered. PLAIN is allowed
-- on the plain stream (Rendezvous's allow_plain_without_tls on loopback is the same rule).
c2s_require_encryption = false
s2s_require_encryption = false
allow_unencrypted_plain_auth = true

-- Credentials as SCRAM-SHA-256 (default SHA-1) so every XMPP server offers the same
-- mechanism; PBKDF2 iterations 4096 (default 10000) as Rendezvous's scram_iterations and
-- ejabberd's fixed count, so SCRAM logins/s compare the servers, not their iteration counts.
authentication = "internal_hashed"
password_hash = "SHA-256"
default_iteration_count = 4096

-- Default file storage (like Rendezvous's on-disk store), in the temp dir.
storage = "internal"

-- Open XEP-0077 registration. mod_register_limits exempts registration_allowlist from its
-- throttle (loopback is in the default list; stated here so it is visible).
allow_registration = true
registration_allowlist = { "127.0.0.1", "::1" }

-- No mod_limits (c2s rate limits) is loaded. Idle sessions are not cut during --hold
-- (c2s_timeout is only the negotiation timeout; mod_ping is client-driven).
-- Stanza size: default 256 KiB, as Rendezvous's max_stanza_bytes.

-- Modules: only what sessions, rosters and presence need. mod_presence, mod_message, mod_iq
-- and mod_c2s are loaded automatically; offline storage and s2s are not needed.
modules_enabled = {
	"roster";     -- RFC 6121 rosters and subscriptions
	"saslauth";   -- SASL
	"disco";      -- service discovery (clients ask)
	"register";   -- XEP-0077 in-band registration
	"ping";       -- XEP-0199 (answers client pings)
	"posix";      -- signals
}
modules_disabled = {
	"offline";    -- autoloaded otherwise; offline storage adds unrelated work
	"s2s";
	"s2s_auth_certs";
}

VirtualHost "@DOMAIN@"
