#!/usr/bin/env python3
"""Test helper for tests/it/delay.rs: a link delay without netem, and a TCP listener.

The kernel the tests run on may have no netem (sch_netem), so a delay is added in user space:
an iptables rule in a network namespace sends the packets to delay to an NFQUEUE, and

    delay_link.py delay --queue N --delay-ms D --max-seconds S

bound to that queue in the same namespace (`ip netns exec NS ...`: NFQUEUE sockets are per
network namespace) holds each packet D ms from its arrival, then accepts it. The delay is the
same for every packet, so packets leave in the order they came. It speaks nfnetlink_queue over a
plain AF_NETLINK socket, standard library only.

Nothing is ever dropped on purpose:
- the queue is configured fail-open: a packet the kernel cannot queue (queue full, socket
  buffer full) is accepted undelayed, never dropped;
- on exit (the max lifetime, SIGTERM, or EOF on stdin, which is how the test's handle stops it
  and how it notices that the test process is gone) every packet still held is accepted first;
- the rule uses `--queue-bypass`, so once this process is gone packets flow undelayed instead
  of being dropped. (Killed with SIGKILL, the packets it held at that moment are dropped by the
  kernel, as for any lost packet; TCP sends them again.)

    delay_link.py listen --addr A --port P --max-seconds S

is a TCP listener for probes to connect to: it accepts, and closes each connection when the peer
does (or after 10 s). It also ends at its max lifetime or on EOF on stdin.

Both print `ready` on stdout once set up, and a summary on stderr at exit.
"""

import argparse
import collections
import errno
import os
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_CFG_F_FAIL_OPEN = 1
NF_ACCEPT = 1
SO_RCVBUFFORCE = 33
NLA_TYPE_MASK = 0x3FFF


class Stop(Exception):
    """Raised by the SIGTERM handler: leave the loop, accepting what is held."""


def on_term(_signum, _frame):
    raise Stop()


def attr(kind, payload):
    """One netlink attribute: host-order header, payload padded to 4 bytes."""
    header = struct.pack("=HH", 4 + len(payload), kind)
    return header + payload + b"\0" * (-len(payload) % 4)


class Queue:
    def __init__(self, num):
        self.num = num
        self.seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def send(self, msg_type, attrs, flags=NLM_F_REQUEST):
        self.seq += 1
        # nfgenmsg: family AF_UNSPEC, version NFNETLINK_V0, res_id (the queue) in network order.
        body = struct.pack("!BBH", 0, 0, self.num) + b"".join(attrs)
        header = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type,
                             flags, self.seq, 0)
        self.sock.sendto(header + body, (0, 0))
        return self.seq

    def configure(self, attrs):
        """A config message, waiting (bounded) for the kernel's acknowledgement."""
        seq = self.send(NFQNL_MSG_CONFIG, attrs, NLM_F_REQUEST | NLM_F_ACK)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.sock], [], [], 0.5)
            if not ready:
                continue
            data = self.sock.recv(65536)
            for msg_type, msg_seq, payload in messages(data):
                if msg_type == NLMSG_ERROR and msg_seq == seq:
                    (code,) = struct.unpack_from("=i", payload)
                    if code != 0:
                        raise OSError(-code, "nfnetlink_queue config: " + os.strerror(-code))
                    return
        raise TimeoutError("no acknowledgement from nfnetlink_queue")

    def bind(self, maxlen):
        self.configure([attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, 0))])
        # Only the metadata (the packet id) is copied: the verdict leaves the packet as it was.
        self.configure([attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))])
        self.configure([attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen))])
        self.configure([
            attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN)),
            attr(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN)),
        ])

    def accept(self, packet_id):
        self.send(NFQNL_MSG_VERDICT, [attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id))])


def messages(data):
    """(type, seq, payload) of each netlink message in one datagram."""
    offset = 0
    while offset + 16 <= len(data):
        length, msg_type, _flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16 or offset + length > len(data):
            break
        yield msg_type, seq, data[offset + 16:offset + length]
        offset += (length + 3) & ~3


def packet_id(payload):
    """The id in a packet message's NFQA_PACKET_HDR (after the 4-byte nfgenmsg)."""
    offset = 4
    while offset + 4 <= len(payload):
        length, kind = struct.unpack_from("=HH", payload, offset)
        if length < 4:
            break
        if kind & NLA_TYPE_MASK == NFQA_PACKET_HDR:
            return struct.unpack_from("!I", payload, offset + 4)[0]
        offset += (length + 3) & ~3
    return None


def stdin_closed():
    """Whether stdin is at EOF (read only when select says it is readable)."""
    try:
        return os.read(sys.stdin.fileno(), 4096) == b""
    except OSError:
        return True


def delay(args):
    queue = Queue(args.queue)
    queue.bind(args.maxlen)
    held = collections.deque()  # (release time, packet id), in arrival order
    counts = {"delayed": 0, "overruns": 0, "errors": 0}
    hold = args.delay_ms / 1000.0
    end = time.monotonic() + args.max_seconds
    watch = [queue.sock, sys.stdin]
    print("ready", flush=True)
    why = "max lifetime"
    try:
        while True:
            now = time.monotonic()
            while held and held[0][0] <= now:
                queue.accept(held.popleft()[1])
            if now >= end:
                break
            wait = end - now
            if held:
                wait = min(wait, held[0][0] - now)
            ready, _, _ = select.select(watch, [], [], max(wait, 0))
            if sys.stdin in ready and stdin_closed():
                why = "stdin closed"
                break
            if queue.sock not in ready:
                continue
            # Everything the socket has now, stamped with the time it was read.
            while True:
                try:
                    data = queue.sock.recv(65536, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno != errno.ENOBUFS:
                        raise
                    # The kernel could not queue some packets to us: fail-open accepted them.
                    counts["overruns"] += 1
                    continue
                arrived = time.monotonic()
                for msg_type, _seq, payload in messages(data):
                    if msg_type == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                        pid = packet_id(payload)
                        if pid is not None:
                            held.append((arrived + hold, pid))
                            counts["delayed"] += 1
                    elif msg_type == NLMSG_ERROR and struct.unpack_from("=i", payload)[0] != 0:
                        counts["errors"] += 1
    except Stop:
        why = "SIGTERM"
    finally:
        while held:
            queue.accept(held.popleft()[1])
    print(f"delay_link: {why}: {counts['delayed']} packets delayed {args.delay_ms} ms, "
          f"{counts['overruns']} overruns, {counts['errors']} verdict errors", file=sys.stderr)


def listen(args):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((args.addr, args.port))
    server.listen(128)
    conns = {}  # socket -> time it is closed at the latest
    accepted = 0
    end = time.monotonic() + args.max_seconds
    print("ready", flush=True)
    why = "max lifetime"
    try:
        while time.monotonic() < end:
            now = time.monotonic()
            for conn in [c for c, until in conns.items() if until <= now]:
                conn.close()
                del conns[conn]
            ready, _, _ = select.select([server, sys.stdin, *conns], [], [], 0.5)
            if sys.stdin in ready and stdin_closed():
                why = "stdin closed"
                break
            for sock in ready:
                if sock is server:
                    conn, _ = server.accept()
                    accepted += 1
                    if len(conns) >= 256:
                        conn.close()
                    else:
                        conns[conn] = time.monotonic() + 10
                elif sock in conns:
                    try:
                        data = sock.recv(4096)
                    except OSError:
                        data = b""
                    if not data:
                        sock.close()
                        del conns[sock]
    except Stop:
        why = "SIGTERM"
    finally:
        for conn in conns:
            conn.close()
        server.close()
    print(f"delay_link listen: {why}: {accepted} connections accepted", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    d = commands.add_parser("delay", help="hold each packet of an NFQUEUE, then accept it")
    d.add_argument("--queue", type=int, default=0)
    d.add_argument("--delay-ms", type=float, required=True)
    d.add_argument("--maxlen", type=int, default=4096)
    d.add_argument("--max-seconds", type=float, required=True)
    d.set_defaults(run=delay)
    s = commands.add_parser("listen", help="a TCP listener that accepts and waits for the close")
    s.add_argument("--addr", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--max-seconds", type=float, required=True)
    s.set_defaults(run=listen)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    args.run(args)


if __name__ == "__main__":
    main()
