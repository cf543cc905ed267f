"""Recovery of the real chain (issue 10 finding 7): the simulated board behind `sipling edge`
and Kamailio (edge.cfg) notices a restarted Kamailio (its binding is gone) and a restarted
edge (its SAs are gone) by itself, with the default keep-alive, and registers again within
40 s of the restart; the owner's next command then works."""
import time

import pytest

import peers
from sipling_host.edge_kamailio import find_kamailio
from test_edge_sim import Stack, send_message

pytestmark = pytest.mark.skipif(not (find_kamailio() and peers.has_micropython()),
                                reason="kamailio and the MicroPython unix port are needed (make setup)")

LIMIT_S = 40


def _recovered(sim, since):
    """Seconds from `since` until the board says it registered again (None: not in 60 s)."""
    if sim.wait_for(r"registered as sip:lamp@example\.test .* via ipsec-3gpp", 60) is None:
        return None
    return time.monotonic() - since


def test_board_reregisters_after_kamailio_and_edge_restarts(tmp_path):
    st = Stack(tmp_path)
    try:
        path, cfg = st.device("lamp", [("hmac-sha-1-96", "aes-cbc")])
        assert cfg["register"]["keepalive"] == 30   # the default, as provisioned
        sim = st.sim(path)
        assert sim.wait_for(r"registered as sip:lamp@example\.test .* via ipsec-3gpp", 30), sim.lines[-5:]
        assert send_message(st, "sip:lamp@example.test", "status") == 200

        # Kamailio restarts and forgets every binding (usrloc in memory)
        st.kam.stop()
        t0 = time.monotonic()
        st.kam.start()
        took = _recovered(sim, t0)
        assert took is not None and took <= LIMIT_S, (took, sim.lines[-8:])
        assert any("registrar lost our binding" in ln for ln in sim.lines), sim.lines[-8:]
        assert send_message(st, "sip:lamp@example.test", "set relay on") == 200
        assert sim.wait_for(r"command from alice@example\.test \(pai\): set ok", 10)
        print("recovery after a Kamailio restart: %.1f s" % took)

        # the edge restarts and forgets every ipsec-3gpp association
        st.edge_proc.stop()
        t0 = time.monotonic()
        st.start_edge()
        took = _recovered(sim, t0)
        assert took is not None and took <= LIMIT_S, (took, sim.lines[-8:])
        assert any("keep-alive unanswered" in ln for ln in sim.lines), sim.lines[-8:]
        assert send_message(st, "sip:lamp@example.test", "status") == 200
        print("recovery after an edge restart: %.1f s" % took)
    finally:
        st.close()
