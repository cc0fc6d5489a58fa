//! Reasons that need a network loopback cannot give: a missing route, a neighbour that never
//! answers ARP, a router that drops SYNs, a resolver that is down. Each test builds its own
//! network namespaces (root only), runs `vantage probe` inside, and removes them after; no
//! packet leaves the namespaces the test made.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::{needs, vantage_bin};

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) must be installed");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace with loopback up, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new() -> Netns {
        let name = format!(
            "vt{}n{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs `command` inside, asserting success.
    pub fn exec(&self, command: &[&str]) {
        let mut args = vec!["netns", "exec", &self.0];
        args.extend_from_slice(command);
        ip(&args);
    }

    fn probe(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, vantage_bin(), "probe"])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.0));
    }
}

/// Two namespaces joined by a veth pair: `a` is 10.77.0.1/24, `b` is 10.77.0.2/24.
fn linked_pair() -> (Netns, Netns) {
    let (a, b) = (Netns::new(), Netns::new());
    let (va, vb) = (format!("{}a", a.0), format!("{}b", a.0));
    ip(&[
        "link", "add", &va, "netns", &a.0, "type", "veth", "peer", "name", &vb, "netns", &b.0,
    ]);
    a.exec(&["ip", "addr", "add", "10.77.0.1/24", "dev", &va]);
    b.exec(&["ip", "addr", "add", "10.77.0.2/24", "dev", &vb]);
    a.exec(&["ip", "link", "set", &va, "up"]);
    b.exec(&["ip", "link", "set", &vb, "up"]);
    (a, b)
}

#[track_caller]
fn assert_reason(out: &Output, reason: &str) {
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("result    FAILURE {reason} ")),
        "{text}"
    );
}

#[test]
fn no_route_is_network_unreachable() {
    needs(&["root"]);
    let ns = Netns::new();
    assert_reason(
        &ns.probe(&["10.99.0.1:80", "--timeout=5s"]),
        "network_unreachable",
    );
}

#[test]
fn a_neighbour_that_never_answers_arp_is_host_unreachable() {
    needs(&["root"]);
    let (a, _b) = linked_pair();
    // 10.77.0.3 is on the link but nobody has it; the kernel gives up on ARP after ~3s.
    assert_reason(
        &a.probe(&["10.77.0.3:80", "--timeout=10s"]),
        "host_unreachable",
    );
}

#[test]
fn a_dropped_syn_is_connection_timeout() {
    needs(&["root"]);
    let (a, b) = linked_pair();
    // b is the gateway to 10.88.0.0/24 but does not forward, so it drops the SYN silently.
    a.exec(&["ip", "route", "add", "10.88.0.0/24", "via", "10.77.0.2"]);
    // New namespaces inherit ip_forward from the host, which may forward; switch it off.
    b.exec(&["sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"]);
    assert_reason(
        &a.probe(&["10.88.0.5:80", "--timeout=1s"]),
        "connection_timeout",
    );
}

#[test]
fn a_resolver_that_is_down_is_dns_error() {
    needs(&["root"]);
    let ns = Netns::new();
    // `ip netns exec` mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf: the lookup goes
    // to the namespace's own loopback, where nothing listens.
    let dir = format!("/etc/netns/{}", ns.0);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        format!("{dir}/resolv.conf"),
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
    .unwrap();
    let out = ns.probe(&["nosuch.vantage.test:80", "--timeout=5s"]);
    assert_reason(&out, "dns_error");
    assert!(String::from_utf8_lossy(&out.stdout).contains("looking up nosuch.vantage.test"));
}

#[test]
fn echoes_to_a_dead_address_are_icmp_no_reply() {
    needs(&["root"]);
    let (a, _b) = linked_pair();
    // 10.77.0.3 is on the link but nobody has it.
    let out = a.probe(&["10.77.0.3", "--type=icmp", "--timeout=2s"]);
    assert_reason(&out, "icmp_no_reply");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 of 3 answered (100% lost)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_lossy_link_shows_its_loss_ratio() {
    needs(&["root", "tool:iptables"]);
    let (a, b) = linked_pair();
    // b drops 30% of the echo requests it receives, at random.
    b.exec(&[
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "icmp",
        "--icmp-type",
        "echo-request",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.3",
        "-j",
        "DROP",
    ]);
    let dir = crate::support::TempDir::new("lossy");
    let config = dir.write(
        "exporter.yml",
        "targets:\n  - {name: lossy, type: icmp, host: 10.77.0.2, timeout: 6s, icmp: {count: 100, max_loss_ratio: 0.05}}\n",
    );
    let out = a.probe(&[
        &format!("--config.file={}", config.display()),
        "--name=lossy",
    ]);
    assert_reason(&out, "icmp_packet_loss");
    let text = String::from_utf8_lossy(&out.stdout);
    let answered: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("echoes    "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no echoes line in {text}"));
    // 100 echoes at 30% loss: the count of losses is 30 ± 4.6 (one standard deviation).
    let lost = 100 - answered;
    assert!((12..=48).contains(&lost), "{lost} lost of 100\n{text}");
}

#[test]
fn an_unprivileged_user_pings_through_ping_sockets_where_the_sysctl_allows() {
    needs(&["root"]);
    let (a, _b) = linked_pair();
    // The sysctl is per network namespace: this opens ping sockets to every group in `a` only.
    a.exec(&[
        "sh",
        "-c",
        "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range",
    ]);
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &a.0,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
        ])
        .args(["--clear-groups", "--inh-caps=-all", vantage_bin(), "probe"])
        .args(["10.77.0.2", "--type=icmp", "--timeout=3s"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("3 of 3 answered"), "{text}");
}

#[test]
fn a_dns_target_without_a_server_asks_the_system_resolver() {
    needs(&["root", "tool:dnsmasq"]);
    let ns = Netns::new();
    let dir = format!("/etc/netns/{}", ns.0);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(format!("{dir}/resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    let pid_file = format!("{dir}/dnsmasq.pid");
    let mut dnsmasq = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "dnsmasq",
            "--keep-in-foreground",
            "--port=53",
        ])
        .args([
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
        ])
        .arg("--host-record=www.vantage.test,127.0.0.10")
        .arg(format!("--pid-file={pid_file}"))
        .spawn()
        .expect("dnsmasq runs");
    let mut out = ns.probe(&["www.vantage.test", "--type=dns", "--timeout=2s"]);
    for _ in 0..20 {
        if out.status.code() == Some(0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        out = ns.probe(&["www.vantage.test", "--type=dns", "--timeout=2s"]);
    }
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("server    127.0.0.1:53 over udp"), "{text}");
    assert!(
        text.contains("www.vantage.test. 0 IN A 127.0.0.10"),
        "{text}"
    );
}
