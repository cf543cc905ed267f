"""Exactly once under a bad link (issue 10): 200 owner commands through Kamailio (edge.cfg)
and `sipling edge` to the simulated board while a relay between board and edge drops 30%,
duplicates 5% and reorders 10% of the ESP-in-UDP datagrams in each direction. Every command
must get its 200 and run exactly once: Kamailio retransmits (Timer E), the edge relays each
copy with one derived branch (RFC 3261 16.11), the board's server transaction absorbs the
copies and resends its 200 (17.2.2), ESP's replay window drops the duplicated datagrams."""
import random
import re
import socket
import threading
import time

import pytest

import peers
from sipling_host.edge_kamailio import find_kamailio
from test_edge_sim import Stack, send_message

pytestmark = pytest.mark.skipif(not (find_kamailio() and peers.has_micropython()),
                                reason="kamailio and the MicroPython unix port are needed (make setup)")

H = "127.0.0.1"
COMMANDS = 200
PARALLEL = 3
LOSS, DUP, REORDER = 0.30, 0.05, 0.10


class LossyRelay:
    """UDP between the board (it sends to `port`) and the edge's ESP-in-UDP port, with loss,
    duplication and reordering drawn from a seeded generator (both directions)."""

    def __init__(self, edge_port, seed=10):
        self.rng = random.Random(seed)
        self.board_side = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.board_side.bind((H, 0))
        self.port = self.board_side.getsockname()[1]
        self.edge_side = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.edge_side.bind((H, 0))
        self.edge = (H, edge_port)
        self.board = None
        self.held = {}
        self.stats = {"passed": 0, "dropped": 0, "duplicated": 0, "reordered": 0}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._pump, args=(self.board_side, self.edge_side, True), daemon=True),
                        threading.Thread(target=self._pump, args=(self.edge_side, self.board_side, False), daemon=True)]
        for t in self.threads:
            t.start()

    def _pump(self, src, dst, upward):
        src.settimeout(0.05)
        while not self.stop.is_set():
            try:
                data, addr = src.recvfrom(65535)
            except socket.timeout:
                late = self.held.pop(upward, None)   # nothing came after it: send it now
                if late is not None:
                    self._send(dst, late, upward)
                continue
            if upward:
                self.board = addr
            r = self.rng.random()
            if r < LOSS:
                self.stats["dropped"] += 1
                continue
            if r < LOSS + REORDER and upward not in self.held:
                self.stats["reordered"] += 1
                self.held[upward] = data              # goes out after the next datagram
                continue
            self._send(dst, data, upward)
            if r < LOSS + REORDER + DUP:
                self.stats["duplicated"] += 1
                self._send(dst, data, upward)
            late = self.held.pop(upward, None)
            if late is not None:
                self._send(dst, late, upward)

    def _send(self, sock, data, upward):
        to = self.edge if upward else self.board
        if to is not None:
            sock.sendto(data, to)
            self.stats["passed"] += 1

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join()
        self.board_side.close()
        self.edge_side.close()


def _command(st, body, results, i):
    # Kamailio's Timer F is 32 s (edge.cfg fr_timer): wait a little longer for the answer
    results[i] = send_message(st, "sip:relay@example.test", body, timeout=40)


def test_200_commands_under_loss_duplication_and_reordering_run_exactly_once(tmp_path):
    st = Stack(tmp_path)
    relay = LossyRelay(st.edge["encap"])
    try:
        path, cfg = st.device("relay", [("hmac-sha-1-96", "aes-cbc")], encap_port=relay.port)
        sim = st.sim(path)
        assert sim.wait_for(r"registered as sip:relay@example\.test .* via ipsec-3gpp", 90), sim.lines[-8:]
        results = [None] * COMMANDS
        bodies = ["set relay on" if i % 2 else "set relay off" for i in range(COMMANDS)]
        t0 = time.monotonic()
        for start in range(0, COMMANDS, PARALLEL):
            ts = [threading.Thread(target=_command, args=(st, bodies[i], results, i))
                  for i in range(start, min(start + PARALLEL, COMMANDS))]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        took = time.monotonic() - t0
        time.sleep(2)   # late copies still on the way must not run either
        sim.send("counters")
        line = sim.wait_for(r"counters:", 10)
        counters = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", line))
        lost = [i for i, r in enumerate(results) if r != 200]
        print("lossy link: %d commands in %.0f s, relay %s, board %s" % (COMMANDS, took, relay.stats, counters))
        assert lost == [], [(i, results[i]) for i in lost]
        assert counters["commands"] == COMMANDS, counters          # each ran once: none twice
        assert counters["retransmissions_absorbed"] > 0, counters  # the loss did make copies
        assert relay.stats["dropped"] > 0 and relay.stats["duplicated"] > 0 and relay.stats["reordered"] > 0
        sim.send("quit")
    finally:
        st.close()
        relay.close()
