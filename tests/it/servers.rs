//! Real servers from Debian packages, for the STARTTLS and dialogue tests: each one started in
//! the foreground on a free loopback port, with its config, data and logs in a folder of its
//! own and a certificate chain made at test time, and stopped by PID at the end.
//!
//! `tests/run` installs the packages, and skips a test whose server is missing (see
//! `tests/needs` and `support::needs`).

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::pki::{Ca, Leaf, Pki, days};
use crate::support::{TempDir, closed_port, socket_states};

/// The name the server certificates carry, and the probes verify (`Pki::yaml`).
pub const SERVER_NAME: &str = "vantage.test";

/// A chain for a server: a leaf for [`SERVER_NAME`] issued by an intermediate of the test root,
/// written as `chain.pem` (leaf, then intermediate) and `leaf.key` into the server's folder.
pub struct Chain {
    pub pki: Pki,
    pub intermediate: String,
    /// SHA-256 of the leaf's DER, lowercase hex, as the probe reports it.
    pub leaf_sha256: String,
    pub leaf_not_after: i64,
}

impl Chain {
    pub fn new(tag: &str) -> Chain {
        let pki = Pki::new(tag);
        let intermediate = format!("vantage {tag} intermediate");
        let ca: Ca = pki.root.intermediate(&intermediate, days(365));
        let not_after = days(45);
        let leaf = ca.leaf(Leaf::server(&[SERVER_NAME]).valid(days(-1), not_after));
        let pem = format!("{}{}", leaf.cert.pem(), ca.cert.pem());
        pki.dir.write("chain.pem", &pem);
        pki.dir.write("leaf.key", &leaf.key.serialize_pem());
        let leaf_sha256 = vantage::tls::cert::CertFacts::inspect(leaf.der().as_ref()).sha256;
        Chain {
            pki,
            intermediate,
            leaf_sha256,
            leaf_not_after: not_after.unix_timestamp(),
        }
    }

    /// Copies the chain and key into `dir` (where the server may read them as its own user)
    /// and returns their paths.
    fn install(&self, dir: &TempDir) -> (PathBuf, PathBuf) {
        let cert = dir.0.join("server-chain.pem");
        let key = dir.0.join("server.key");
        std::fs::copy(self.pki.dir.0.join("chain.pem"), &cert).unwrap();
        std::fs::copy(self.pki.dir.0.join("leaf.key"), &key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        (cert, key)
    }
}

/// A server process this test started, in a process group of its own (some servers fork
/// workers). Dropping it stops the server: SIGTERM to its PID, and after a grace period
/// SIGKILL to what is left of its group.
pub struct Daemon {
    pub name: &'static str,
    /// The ports it listens on, on 127.0.0.1.
    pub ports: Vec<u16>,
    /// Its config, data and logs: removed once it has stopped.
    _dir: TempDir,
    child: Child,
    logs: Vec<PathBuf>,
}

impl Daemon {
    /// Starts `command` with its output in `DIR/NAME.out`, and waits until every port listens.
    /// `logs` are further files (inside `dir`) that [`Daemon::log`] reads.
    fn start(
        name: &'static str,
        dir: TempDir,
        ports: Vec<u16>,
        mut command: Command,
        logs: &[&str],
    ) -> Daemon {
        let out = dir.0.join(format!("{name}.out"));
        let file = || {
            std::fs::File::options()
                .read(true)
                .append(true)
                .create(true)
                .open(&out)
                .unwrap()
        };
        // stdin too: vsftpd, made for inetd, writes its start-up errors to fd 0.
        let child = command
            .stdin(file())
            .stdout(file())
            .stderr(file())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let mut all_logs = vec![out];
        all_logs.extend(logs.iter().map(|l| dir.0.join(l)));
        let mut daemon = Daemon {
            name,
            ports,
            _dir: dir,
            child,
            logs: all_logs,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !daemon
            .ports
            .iter()
            .all(|&p| socket_states(p).contains("LISTEN"))
        {
            if let Ok(Some(exit)) = daemon.child.try_wait() {
                panic!(
                    "{name} exited with {exit} before listening:\n{}",
                    daemon.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not listen within 30s:\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        self.logs
            .iter()
            .map(|l| std::fs::read_to_string(l).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits (bounded) until the server holds no connection on any of its ports: only the
    /// listener and TIME_WAIT remain, on its side or ours.
    pub fn assert_holds_nothing(&self) {
        for &port in &self.ports {
            let mut states = Default::default();
            let settled = Instant::now() + Duration::from_secs(5);
            while Instant::now() < settled {
                states = socket_states(port);
                states.remove("LISTEN");
                states.remove("TIME_WAIT");
                if states.is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                states.is_empty(),
                "{} on port {port} still holds connections: {states:?}\n{}",
                self.name,
                self.log()
            );
        }
    }

    /// Waits (bounded) until the log shows `needle` at least `count` times.
    pub fn wait_for_log(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "no {count} lines with {needle:?} within 10s in the {} log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal_group(&self, signal: &str) -> bool {
        Command::new("sh")
            .args([
                "-c",
                &format!("kill -{signal} -- -{} 2>/dev/null", self.child.id()),
            ])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Workers that outlive their master (dovecot's exit on their own, shortly).
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && self.signal_group("0") {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal_group("KILL");
        let _ = self.child.wait();
    }
}

/// Which variant of a server to start: offering STARTTLS with `chain`, or with TLS off.
pub type Tls<'a> = Option<&'a Chain>;

/// OpenLDAP's slapd with no database: StartTLS, Bind, WhoAmI and Unbind need none.
pub fn slapd(tls: Tls) -> Daemon {
    slapd_demanding(tls, None)
}

/// slapd that, with `client_ca`, demands a client certificate issued by that CA.
pub fn slapd_demanding(tls: Tls, client_ca: Option<&std::path::Path>) -> Daemon {
    let dir = TempDir::new("slapd");
    let port = closed_port();
    let mut conf = format!(
        "pidfile {0}/slapd.pid\nargsfile {0}/slapd.args\nloglevel 0\n",
        dir.0.display()
    );
    if let Some(chain) = tls {
        let (cert, key) = chain.install(&dir);
        // With any TLS directive slapd accepts StartTLS, so the variant without TLS has none.
        conf.push_str(&format!(
            "TLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
            cert.display(),
            key.display()
        ));
        if let Some(ca) = client_ca {
            conf.push_str(&format!(
                "TLSCACertificateFile {}\nTLSVerifyClient demand\n",
                ca.display()
            ));
        }
    }
    let conf = dir.write("slapd.conf", &conf);
    let mut command = Command::new("/usr/sbin/slapd");
    // -d keeps slapd in the foreground and logs each connection's operations to stderr.
    command
        .args(["-d", "stats", "-h"])
        .arg(format!("ldap://127.0.0.1:{port}/"))
        .arg("-f")
        .arg(&conf)
        .env("LDAPNOINIT", "1");
    Daemon::start("slapd", dir, vec![port], command, &[])
}

/// Dovecot serving IMAP and POP3 (ports 0 and 1). Nobody logs in, but without a passdb its auth
/// process dies, so it has one that refuses everyone.
pub fn dovecot(tls: Tls) -> Daemon {
    let dir = TempDir::new("dovecot");
    // Two released ports in a row can be the same one.
    let (imap, pop3) = loop {
        let ports = (closed_port(), closed_port());
        if ports.0 != ports.1 {
            break ports;
        }
    };
    let ssl = match tls {
        Some(chain) => {
            let (cert, key) = chain.install(&dir);
            format!(
                "ssl = yes\nssl_cert = <{}\nssl_key = <{}\n",
                cert.display(),
                key.display()
            )
        }
        None => "ssl = no\n".to_string(),
    };
    let conf = dir.write(
        "dovecot.conf",
        &format!(
            "base_dir = {0}/run\nstate_dir = {0}/state\nlog_path = {0}/dovecot.log\n\
             protocols = imap pop3\nlisten = 127.0.0.1\n{ssl}\
             passdb {{\n  driver = static\n  args = nopassword\n  deny = yes\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {imap}\n  }}\n\
             \x20 inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    address = 127.0.0.1\n    port = {pop3}\n  }}\n\
             \x20 inet_listener pop3s {{\n    port = 0\n  }}\n}}\n",
            dir.0.display()
        ),
    );
    let mut command = Command::new("/usr/sbin/dovecot");
    command.arg("-F").arg("-c").arg(&conf);
    Daemon::start("dovecot", dir, vec![imap, pop3], command, &["dovecot.log"])
}

/// vsftpd with explicit TLS (AUTH TLS). Each session forks a privileged parent and an
/// unprivileged child chrooted to an empty, read-only folder.
pub fn vsftpd(tls: Tls) -> Daemon {
    let dir = TempDir::new("vsftpd");
    let port = closed_port();
    let empty = dir.0.join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ssl = match tls {
        // HIGH: Debian's default cipher list is RSA-only, which fails TLS 1.2 with an ECDSA key.
        Some(chain) => {
            let (cert, key) = chain.install(&dir);
            format!(
                "ssl_enable=YES\nrsa_cert_file={}\nrsa_private_key_file={}\nssl_ciphers=HIGH\n",
                cert.display(),
                key.display()
            )
        }
        None => "ssl_enable=NO\n".to_string(),
    };
    // Local logins are never used; with anonymous ones off too, vsftpd refuses every session.
    let conf = dir.write(
        "vsftpd.conf",
        &format!(
            "listen=YES\nlisten_ipv6=NO\nbackground=NO\nlisten_address=127.0.0.1\n\
             listen_port={port}\nanonymous_enable=NO\nlocal_enable=YES\n\
             secure_chroot_dir={}\nxferlog_enable=YES\nvsftpd_log_file={}/vsftpd.log\n\
             log_ftp_protocol=YES\n{ssl}",
            empty.display(),
            dir.0.display()
        ),
    );
    let mut command = Command::new("/usr/sbin/vsftpd");
    command.arg(&conf);
    Daemon::start("vsftpd", dir, vec![port], command, &["vsftpd.log"])
}

/// The uid and gid of a system user, from /etc/passwd.
fn user(name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == name)
        .map(|f| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        .unwrap_or_else(|| panic!("no user {name} in /etc/passwd"))
}

/// PostgreSQL 15 on a cluster made for the test. It refuses to run as root, so initdb and the
/// server run as `postgres`, which also must own the folder and the key (mode 0600).
pub fn postgres(tls: Tls) -> Daemon {
    postgres_checking(tls, None)
}

/// PostgreSQL that, with `client_ca`, verifies the client certificates it is shown against it.
pub fn postgres_checking(tls: Tls, client_ca: Option<&std::path::Path>) -> Daemon {
    const BIN: &str = "/usr/lib/postgresql/15/bin";
    let dir = TempDir::new("postgres");
    let port = closed_port();
    let (uid, gid) = user("postgres");
    std::os::unix::fs::chown(&dir.0, Some(uid), Some(gid)).unwrap();
    let data = dir.0.join("data");
    let initdb = Command::new(format!("{BIN}/initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "--no-instructions",
        ])
        .args(["-E", "UTF8", "--locale=C"])
        .current_dir(&dir.0)
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    assert!(
        initdb.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&initdb.stderr)
    );
    let ssl = match tls {
        Some(chain) => {
            let (cert, key) = chain.install(&dir);
            std::os::unix::fs::chown(&key, Some(uid), Some(gid)).unwrap();
            let ca = client_ca.map_or(String::new(), |ca| {
                format!("ssl_ca_file = '{}'\n", ca.display())
            });
            format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n{ca}",
                cert.display(),
                key.display()
            )
        }
        None => "ssl = off\n".to_string(),
    };
    // Shared memory as files in the data folder, not /dev/shm; connections logged, so that the
    // test sees the server met every run and complained of none.
    std::fs::write(
        data.join("postgresql.conf"),
        format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             max_connections = 20\nshared_buffers = 8MB\ndynamic_shared_memory_type = mmap\n\
             log_connections = on\nlog_disconnections = on\nlc_messages = 'C'\n\
             autovacuum = off\nfsync = off\n{ssl}",
            dir.0.display()
        ),
    )
    .unwrap();
    let mut command = Command::new(format!("{BIN}/postgres"));
    command
        .arg("-D")
        .arg(&data)
        .current_dir(&dir.0)
        .uid(uid)
        .gid(gid);
    Daemon::start("postgres", dir, vec![port], command, &[])
}

/// Exim's daemon in the foreground, with no routers or transports: it accepts sessions and
/// refuses every recipient, which is all a STARTTLS probe needs. It runs as root (so the
/// config, log and key in the test's folder need no owner changes) and forks per connection.
pub fn exim(tls: Tls) -> Daemon {
    let dir = TempDir::new("exim");
    let port = closed_port();
    let tls = match tls {
        Some(chain) => {
            let (cert, key) = chain.install(&dir);
            format!(
                "tls_advertise_hosts = *\ntls_certificate = {}\ntls_privatekey = {}\n",
                cert.display(),
                key.display()
            )
        }
        None => "tls_advertise_hosts =\n".to_string(),
    };
    // +smtp_connection logs each session's end, "closed by QUIT" for a polite client.
    let conf = dir.write(
        "exim.conf",
        &format!(
            "primary_hostname = {SERVER_NAME}\nkeep_environment =\nexim_user = root\n\
             exim_group = root\nlocal_interfaces = 127.0.0.1\ndaemon_smtp_ports = {port}\n\
             spool_directory = {0}/spool\nlog_file_path = {0}/log/%slog\n\
             pid_file_path = {0}/exim.pid\nlog_selector = +smtp_connection\n{tls}",
            dir.0.display()
        ),
    );
    let mut command = Command::new("/usr/sbin/exim4");
    // -bdf: the daemon, in the foreground. -oP on the command line too, or exim leaves its pid
    // file behind.
    command
        .arg("-bdf")
        .arg("-C")
        .arg(&conf)
        .arg("-oP")
        .arg(dir.0.join("exim.pid"));
    Daemon::start(
        "exim",
        dir,
        vec![port],
        command,
        &["log/mainlog", "log/paniclog"],
    )
}

/// Prosody serving the XMPP domain [`SERVER_NAME`]. Without a certificate it would still offer
/// STARTTLS (and fail the handshake), so the variant without TLS drops its TLS module.
pub fn prosody(tls: Tls) -> Daemon {
    let dir = TempDir::new("prosody");
    let port = closed_port();
    std::fs::create_dir(dir.0.join("data")).unwrap();
    std::fs::create_dir(dir.0.join("certs")).unwrap();
    let (modules, host) = match tls {
        Some(chain) => {
            let (cert, key) = chain.install(&dir);
            (
                "modules_enabled = { \"tls\", \"saslauth\" }\n\
                 modules_disabled = { \"s2s\", \"s2s_auth_certs\", \"offline\" }\n"
                    .to_string(),
                format!(
                    "VirtualHost \"{SERVER_NAME}\"\n  ssl = {{ certificate = \"{}\", key = \"{}\" }}\n",
                    cert.display(),
                    key.display()
                ),
            )
        }
        None => (
            "modules_enabled = { \"saslauth\" }\n\
             modules_disabled = { \"tls\", \"s2s\", \"s2s_auth_certs\", \"offline\" }\n\
             c2s_require_encryption = false\n"
                .to_string(),
            format!("VirtualHost \"{SERVER_NAME}\"\n"),
        ),
    };
    // `certificates` points at an empty folder, keeping discovery away from /etc/prosody/certs.
    let conf = dir.write(
        "prosody.cfg.lua",
        &format!(
            "run_as_root = true\npidfile = \"{0}/prosody.pid\"\ndata_path = \"{0}/data\"\n\
             certificates = \"{0}/certs\"\n\
             log = {{ {{ levels = {{ min = \"info\" }}, to = \"file\", filename = \"{0}/prosody.log\" }} }}\n\
             interfaces = {{ \"127.0.0.1\" }}\nlocal_interfaces = {{ \"127.0.0.1\" }}\n\
             c2s_ports = {{ {port} }}\nc2s_direct_tls_ports = {{ }}\nlegacy_ssl_ports = {{ }}\n\
             s2s_ports = {{ }}\ns2s_direct_tls_ports = {{ }}\n{modules}\
             authentication = \"internal_hashed\"\nstorage = \"internal\"\n{host}",
            dir.0.display()
        ),
    );
    let mut command = Command::new("/usr/bin/prosody");
    // Always --config: without it prosody starts on the system's config.
    command.arg("--config").arg(&conf).arg("-F");
    let daemon = Daemon::start("prosody", dir, vec![port], command, &["prosody.log"]);
    daemon.wait_for_log(&format!("Activated service 'c2s' on [127.0.0.1]:{port}"), 1);
    daemon
}

/// redis-server without persistence, logging each connection a client closes.
pub fn redis() -> Daemon {
    let dir = TempDir::new("redis");
    let port = closed_port();
    let mut command = Command::new("/usr/bin/redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--loglevel", "verbose", "--dir"])
        .arg(&dir.0)
        .arg("--logfile")
        .arg(dir.0.join("redis.log"));
    Daemon::start("redis", dir, vec![port], command, &["redis.log"])
}
