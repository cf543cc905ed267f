# RFC 3261 section 17 transactions: timers at literal times (Table 4, 17.1.1.2, 17.1.2.2,
# 17.2.1, 17.2.2), absorption, ACK generation (17.1.1.3), matching (17.1.3, 17.2.3) and the
# RFC 2543 fallback. Real parsed messages; the layer never sees a socket or a clock.
from util import raises

from sipling.sip import message
from sipling.sip.parser import parse
from sipling.sip.transaction import (
    CALLING, COMPLETED, CONFIRMED, EV_ABSORBED, EV_ACK, EV_DROPPED, EV_REQUEST, EV_RESPONSE,
    EV_STRAY, EV_TIMEOUT, PROCEEDING, TERMINATED, TRYING, TransactionLayer)

DEST = ("192.0.2.1", 5060)


def req(method, branch=b"z9hG4bKaaa1", cseq=1, sent_by=b"dev.test:5062", to_tag=None,
        route=True, cseq_method=None, uri=b"sip:bob@example.test"):
    to = b"<sip:bob@example.test>" + (b";tag=" + to_tag if to_tag else b"")
    br = b";branch=" + branch if branch is not None else b""
    lines = [b"%s %s SIP/2.0" % (method, uri),
             b"Via: SIP/2.0/UDP %s%s" % (sent_by, br),
             b"Max-Forwards: 70"]
    if route:
        lines.append(b"Route: <sip:proxy.example.test;lr>")
    lines += [b"From: <sip:dev@example.test>;tag=ft1", b"To: " + to,
              b"Call-ID: call-1@dev.test", b"CSeq: %d %s" % (cseq, cseq_method or method),
              b"Content-Length: 0", b"", b""]
    return parse(b"\r\n".join(lines))


def resp(request, code, reason=b"X", to_tag=b"tt9"):
    r = message.response(request, code, reason, to_tag=to_tag if code > 100 else None)
    return parse(r.serialize())


def drive(layer, until):
    """Fire timers in order up to `until`; return [(time, event kinds, n datagrams)]."""
    out = []
    while True:
        t = layer.get_timer()
        if t is None or t > until:
            return out
        ev = layer.handle_timer(t)
        out.append((t, [e[0] for e in ev], len(layer.datagrams_to_send())))


def sends(trace):
    return [t for t, ev, n in trace if n]


def test_non_invite_client_udp_timers_e_f():
    L = TransactionLayer()
    tx = L.send_request(req(b"REGISTER"), 0, dest=DEST)
    first = L.datagrams_to_send()
    assert len(first) == 1 and first[0][1] == DEST and first[0][0].startswith(b"REGISTER ")
    assert L.get_timer() == 500
    tr = drive(L, 100000)
    # Timer E: T1 doubling to T2 (17.1.2.2); Timer F = 64*T1 (Table 4)
    assert sends(tr) == [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    assert tr[-1] == (32000, [EV_TIMEOUT], 0)
    assert tx.state == TERMINATED and L.get_timer() is None


def test_invite_client_udp_timers_a_b():
    L = TransactionLayer()
    tx = L.send_request(req(b"INVITE"), 1000)
    assert tx.state == CALLING
    L.datagrams_to_send()
    tr = drive(L, 100000)
    # Timer A doubles without cap (17.1.1.2); Timer B = 64*T1
    assert sends(tr) == [1500, 2500, 4500, 8500, 16500, 32500]
    assert tr[-1] == (33000, [EV_TIMEOUT], 0)
    assert L.get_timer() is None


def test_configurable_t1_t2():
    L = TransactionLayer(t1=100, t2=400, t4=1000)
    L.send_request(req(b"MESSAGE"), 0)
    tr = drive(L, 100000)
    assert sends(tr) == [100, 300, 700, 1100, 1500, 1900, 2300, 2700, 3100, 3500, 3900, 4300,
                         4700, 5100, 5500, 5900, 6300]
    assert tr[-1][0] == 6400 and tr[-1][1] == [EV_TIMEOUT]


def test_non_invite_client_proceeding_and_timer_k():
    L = TransactionLayer()
    r = req(b"REGISTER")
    tx = L.send_request(r, 0)
    L.datagrams_to_send()
    assert drive(L, 700) == [(500, [], 1)]
    ev = L.receive(resp(r, 100), 700)
    assert ev == [(EV_RESPONSE, tx, ev[0][2])] and tx.state == PROCEEDING
    assert L.get_timer() == 1500          # the scheduled E stays
    tr = drive(L, 9999)
    assert sends(tr) == [1500, 5500, 9500]  # then every T2 in Proceeding
    ok = resp(r, 200)
    ev = L.receive(ok, 10000)
    assert [e[0] for e in ev] == [EV_RESPONSE] and ev[0][2].status == 200
    assert tx.state == COMPLETED and L.get_timer() == 15000   # Timer K = T4
    again = resp(r, 200)
    assert L.receive(again, 12000) == [(EV_ABSORBED, tx, again)]
    assert L.datagrams_to_send() == []
    assert drive(L, 100000) == [(15000, [], 0)]
    assert tx.state == TERMINATED
    assert L.receive(ok, 15001)[0][0] == EV_STRAY


def test_reliable_client_no_retransmissions_k_zero():
    L = TransactionLayer()
    r = req(b"REGISTER")
    tx = L.send_request(r, 0, reliable=True)
    assert len(L.datagrams_to_send()) == 1
    assert L.get_timer() == 32000          # only Timer F
    L.receive(resp(r, 200), 40)
    assert tx.state == TERMINATED and L.get_timer() is None   # Timer K = 0
    inv = req(b"INVITE", branch=b"z9hG4bKinv")
    tx = L.send_request(inv, 0, reliable=True)
    L.datagrams_to_send()
    assert L.get_timer() == 32000          # only Timer B
    L.receive(resp(inv, 486), 100)
    assert len(L.datagrams_to_send()) == 1   # the ACK
    assert tx.state == TERMINATED and L.get_timer() is None   # Timer D = 0


def test_invite_client_non_2xx_generates_ack_and_timer_d():
    L = TransactionLayer()
    inv = req(b"INVITE", cseq=7)
    tx = L.send_request(inv, 0, dest=DEST)
    L.datagrams_to_send()
    L.receive(resp(inv, 180), 200)
    # no A, and B only runs in Calling; what is left is our Timer C policy (180 s)
    assert tx.state == PROCEEDING and L.get_timer() == 180200
    busy = resp(inv, 486, b"Busy Here")
    ev = L.receive(busy, 5000)
    assert [e[0] for e in ev] == [EV_RESPONSE] and tx.state == COMPLETED
    (ack_bytes, dest), = L.datagrams_to_send()
    assert dest == DEST
    ack = parse(ack_bytes)
    # 17.1.1.3
    assert ack.method == b"ACK" and ack.uri == inv.uri
    assert ack.via_branch() == inv.via_branch() and len(ack.get_all(b"via")) == 1
    assert ack.cseq() == (7, b"ACK")
    assert ack.to_tag() == b"tt9" and ack.from_tag() == inv.from_tag()
    assert ack.call_id() == inv.call_id()
    assert ack.get_all(b"route") == inv.get_all(b"route")
    assert L.get_timer() == 37000        # Timer D = 32 s
    ev = L.receive(resp(inv, 486, b"Busy Here"), 6000)
    assert ev[0][0] == EV_ABSORBED
    assert L.datagrams_to_send() == [(ack_bytes, DEST)]   # ACK resent, response not passed up
    assert drive(L, 100000) == [(37000, [], 0)] and tx.state == TERMINATED


def test_invite_client_2xx_terminates_and_retransmission_is_stray():
    L = TransactionLayer()
    inv = req(b"INVITE")
    tx = L.send_request(inv, 0)
    ok = resp(inv, 200)
    assert L.receive(ok, 300)[0][0] == EV_RESPONSE
    assert tx.state == TERMINATED and L.get_timer() is None
    L.datagrams_to_send()
    ev = L.receive(resp(inv, 200), 800)
    assert ev[0][0] == EV_STRAY and ev[0][1] is None
    assert L.datagrams_to_send() == []   # no ACK from the transaction layer for a 2xx


def test_non_invite_server_absorbs_and_timer_j():
    L = TransactionLayer()
    m = req(b"MESSAGE")
    ev = L.receive(m, 0, addr=DEST)
    assert ev[0][0] == EV_REQUEST
    tx = ev[0][1]
    assert tx.state == TRYING and L.get_timer() == 32000   # unanswered guard (64*T1)
    assert L.receive(req(b"MESSAGE"), 50)[0][0] == EV_ABSORBED
    assert L.datagrams_to_send() == []     # Trying: retransmissions are discarded
    L.send_response(tx, resp(m, 200, b"OK"), 100)
    out = L.datagrams_to_send()
    assert len(out) == 1 and out[0][1] == DEST and out[0][0].startswith(b"SIP/2.0 200 OK")
    assert tx.state == COMPLETED and L.get_timer() == 32100   # Timer J = 64*T1
    assert tx.request is None and tx.response is None and tx.status == 200  # heap released
    assert L.receive(req(b"MESSAGE"), 5000)[0][0] == EV_ABSORBED
    assert L.datagrams_to_send() == out    # last response resent
    raises(ValueError, L.send_response, tx, resp(m, 500), 6000)
    assert drive(L, 100000) == [(32100, [], 0)] and tx.state == TERMINATED
    assert L.receive(req(b"MESSAGE"), 40000)[0][0] == EV_REQUEST   # a new transaction


def test_non_invite_server_provisional_resent_and_reliable_j_zero():
    L = TransactionLayer()
    m = req(b"MESSAGE")
    tx = L.receive(m, 0)[0][1]
    L.send_response(tx, resp(m, 180), 10)
    prov = L.datagrams_to_send()
    assert tx.state == PROCEEDING
    L.receive(req(b"MESSAGE"), 20)
    assert L.datagrams_to_send() == prov
    R = TransactionLayer()
    tx = R.receive(m, 0, reliable=True)[0][1]
    R.send_response(tx, resp(m, 200), 10)
    assert tx.state == TERMINATED and R.get_timer() is None


def test_invite_server_timer_g_h():
    L = TransactionLayer()
    inv = req(b"INVITE")
    ev = L.receive(inv, 0, addr=DEST)
    tx = ev[0][1]
    assert ev[0][0] == EV_REQUEST and tx.state == PROCEEDING
    trying = L.datagrams_to_send()
    assert len(trying) == 1 and trying[0][0].startswith(b"SIP/2.0 100 Trying")
    assert parse(trying[0][0]).to_tag() is None
    assert L.receive(req(b"INVITE"), 300)[0][0] == EV_ABSORBED
    assert L.datagrams_to_send() == trying
    L.send_response(tx, resp(inv, 180), 400)
    ring = L.datagrams_to_send()
    L.receive(req(b"INVITE"), 500)
    assert L.datagrams_to_send() == ring
    L.send_response(tx, resp(inv, 486), 1000)
    final = L.datagrams_to_send()
    assert tx.state == COMPLETED
    tr = drive(L, 100000)
    # Timer G: T1 doubling to T2; Timer H = 64*T1 (17.2.1, Table 4)
    assert sends(tr) == [1500, 2500, 4500, 8500, 12500, 16500, 20500, 24500, 28500, 32500]
    assert tr[-1] == (33000, [EV_TIMEOUT], 0) and tx.state == TERMINATED
    assert final[0][0].startswith(b"SIP/2.0 486")


def test_invite_server_ack_confirms_and_timer_i():
    L = TransactionLayer()
    inv = req(b"INVITE")
    tx = L.receive(inv, 0)[0][1]
    L.send_response(tx, resp(inv, 486), 100)
    final = L.datagrams_to_send()[-1]
    assert L.receive(req(b"INVITE"), 200)[0][0] == EV_ABSORBED
    assert L.datagrams_to_send() == [final]
    ack = req(b"ACK", to_tag=b"tt9")
    assert L.receive(ack, 300) == [(EV_ABSORBED, tx, ack)]
    assert tx.state == CONFIRMED and L.get_timer() == 5300    # Timer I = T4
    assert L.receive(req(b"ACK", to_tag=b"tt9"), 400)[0][0] == EV_ABSORBED
    assert L.datagrams_to_send() == []
    assert drive(L, 100000) == [(5300, [], 0)] and tx.state == TERMINATED
    # reliable: no Timer G, Timer I = 0
    R = TransactionLayer()
    tx = R.receive(inv, 0, reliable=True)[0][1]
    R.send_response(tx, resp(inv, 486), 100)
    assert R.get_timer() == 32100                               # only Timer H
    R.receive(ack, 200, reliable=True)
    assert tx.state == TERMINATED and R.get_timer() is None


def test_invite_server_2xx_ends_and_its_ack_goes_to_tu():
    L = TransactionLayer(auto_trying=False)
    inv = req(b"INVITE")
    tx = L.receive(inv, 0)[0][1]
    assert L.datagrams_to_send() == []
    L.send_response(tx, resp(inv, 200), 50)
    assert tx.state == TERMINATED and L.get_timer() is None
    assert L.datagrams_to_send()[0][0].startswith(b"SIP/2.0 200")
    ack = req(b"ACK", branch=b"z9hG4bKnewbranch", to_tag=b"tt9")
    assert L.receive(ack, 100) == [(EV_ACK, None, ack)]
    L.send_stateless(ack, DEST)            # e.g. the TU's own ACK/2xx retransmission
    L.send_stateless(b"raw", None)
    assert L.datagrams_to_send() == [(ack.serialize(), DEST), (b"raw", None)]


def test_client_matching_branch_and_cseq_method():
    L = TransactionLayer()
    inv = req(b"INVITE", branch=b"z9hG4bKsame")
    cancel = req(b"CANCEL", branch=b"z9hG4bKsame")   # 9.1: CANCEL reuses the INVITE branch
    ti = L.send_request(inv, 0)
    tc = L.send_request(cancel, 100)
    raises(ValueError, L.send_request, req(b"INVITE", branch=b"z9hG4bKsame"), 0)
    raises(ValueError, L.send_request, req(b"ACK"), 0)
    ev = L.receive(resp(cancel, 200), 200)
    assert ev[0][1] is tc and tc.state == COMPLETED and ti.state == CALLING
    ev = L.receive(resp(inv, 487), 300)
    assert ev[0][1] is ti and ti.state == COMPLETED
    assert L.receive(resp(req(b"INVITE", branch=b"z9hG4bKother"), 200), 400)[0][0] == EV_STRAY


def test_server_matching_sent_by_method_cancel():
    L = TransactionLayer()
    inv = req(b"INVITE", branch=b"z9hG4bKs1")
    t1 = L.receive(inv, 0)[0][1]
    # same branch from another sent-by: a different transaction (17.2.3)
    ev = L.receive(req(b"INVITE", branch=b"z9hG4bKs1", sent_by=b"other.test:5060"), 10)
    assert ev[0][0] == EV_REQUEST and ev[0][1] is not t1
    # CANCEL: its own transaction, and find_cancelled gives the INVITE's
    c = req(b"CANCEL", branch=b"z9hG4bKs1")
    ev = L.receive(c, 20)
    assert ev[0][0] == EV_REQUEST and ev[0][1] is not t1 and not ev[0][1].invite
    assert L.find_cancelled(c) is t1
    assert L.find_cancelled(req(b"CANCEL", branch=b"z9hG4bKzz")) is None
    # sent-by host compares case-insensitively
    assert L.receive(req(b"INVITE", branch=b"z9hG4bKs1", sent_by=b"DEV.test:5062"), 30)[0][0] == EV_ABSORBED


def test_rfc2543_fallback_matching():
    L = TransactionLayer()
    inv = req(b"INVITE", branch=b"1234")          # no magic cookie
    tx = L.receive(inv, 0)[0][1]
    assert L.receive(req(b"INVITE", branch=b"1234"), 100)[0][0] == EV_ABSORBED
    assert L.receive(req(b"INVITE", branch=b"1234", cseq=2), 100)[0][0] == EV_REQUEST
    assert L.receive(req(b"INVITE", branch=b"1234", uri=b"sip:x@y.test"), 100)[0][0] == EV_REQUEST
    L.send_response(tx, resp(inv, 486, to_tag=b"srv7"), 200)
    L.datagrams_to_send()
    # the ACK matches with the To tag of our response (17.2.3)
    assert L.receive(req(b"ACK", branch=b"1234", to_tag=b"wrong"), 300)[0][0] == EV_ACK
    ev = L.receive(req(b"ACK", branch=b"1234", to_tag=b"srv7"), 300)
    assert ev[0][0] == EV_ABSORBED and ev[0][1] is tx and tx.state == CONFIRMED
    # no branch at all, non-INVITE
    m = req(b"OPTIONS", branch=None)
    t2 = L.receive(m, 400)[0][1]
    assert L.receive(req(b"OPTIONS", branch=None), 450)[0][1] is t2
    c = req(b"CANCEL", branch=b"1234", cseq=2, cseq_method=b"CANCEL")
    assert L.find_cancelled(c) is not None and L.find_cancelled(c).request.cseq()[0] == 2


def test_bad_messages_are_dropped_not_raised():
    L = TransactionLayer()
    bad = message.Message(status=200, reason=b"OK",
                          headers=[[b"Via", b"SIP/2.0/UDP a;branch=z9hG4bKq"], [b"CSeq", b"x"]])
    ev = L.receive(bad, 0)
    assert ev == [(EV_DROPPED, None, "Bad CSeq")] and L.dropped == 1
    novia = message.Message(status=200, reason=b"OK", headers=[[b"CSeq", b"1 INVITE"]])
    assert L.receive(novia, 0)[0][0] == EV_STRAY


def test_server_table_bound_and_timestamp_in_100():
    L = TransactionLayer(max_server=2)
    assert L.receive(req(b"MESSAGE", branch=b"z9hG4bKt1"), 0)[0][0] == EV_REQUEST
    assert L.receive(req(b"MESSAGE", branch=b"z9hG4bKt2"), 0)[0][0] == EV_REQUEST
    ev = L.receive(req(b"MESSAGE", branch=b"z9hG4bKt3"), 0)
    assert ev == [(EV_DROPPED, None, "server transaction table full (2)")] and L.dropped == 1
    assert L.receive(req(b"MESSAGE", branch=b"z9hG4bKt1"), 0)[0][0] == EV_ABSORBED
    L.handle_timer(10 ** 6)                     # both end (unanswered guard): room again
    assert L.receive(req(b"MESSAGE", branch=b"z9hG4bKt3"), 10 ** 6)[0][0] == EV_REQUEST
    # an RFC 2543 INVITE holds two keys once answered but counts once
    N = TransactionLayer(max_server=2)
    t = N.receive(req(b"INVITE", branch=b"b1"), 0)[0][1]
    N.send_response(t, resp(t.request, 486, to_tag=b"x1"), 0)
    assert N.receive(req(b"MESSAGE", branch=b"z9hG4bKm"), 0)[0][0] == EV_REQUEST
    M = TransactionLayer()
    inv = req(b"INVITE")
    inv.add(b"Timestamp", b"54.32 0.5")
    M.receive(parse(inv.serialize()), 0)
    (trying, _), = M.datagrams_to_send()
    assert parse(trying).get(b"Timestamp") == b"54.32 0.5"


class _Lcg:
    def __init__(self, seed):
        self.x = seed

    def __call__(self, n):
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.x >> 8) % n


def test_random_traffic_never_raises_and_everything_ends():
    rnd = _Lcg(7)
    L = TransactionLayer()
    now = 0
    clients = []
    finals = {}
    pool = [b"z9hG4bKp%d" % i for i in range(6)] + [b"old%d" % i for i in range(3)]
    for step in range(600):
        op = rnd(6)
        if op == 0 and len(clients) < 40:
            m = (b"INVITE", b"MESSAGE", b"REGISTER")[rnd(3)]
            r = req(m, branch=b"z9hG4bKc%d" % step)
            clients.append((L.send_request(r, now, reliable=rnd(4) == 0), r))
        elif op == 1 and clients:
            tx, r = clients[rnd(len(clients))]
            code = (100, 180, 200, 486, 500)[rnd(5)]
            for e in L.receive(resp(r, code), now):
                if e[0] == EV_RESPONSE and e[2].status >= 200:
                    finals[id(tx)] = finals.get(id(tx), 0) + 1
        elif op == 2:
            m = (b"INVITE", b"MESSAGE", b"ACK", b"CANCEL")[rnd(4)]
            L.receive(req(m, branch=pool[rnd(len(pool))], to_tag=b"tt9" if m == b"ACK" else None),
                      now, reliable=rnd(4) == 0)
        elif op == 3:
            live = [t for t in L.transactions() if t.server and t.state in (TRYING, PROCEEDING)]
            if live:
                t = live[rnd(len(live))]
                L.send_response(t, resp(t.request, (180, 200, 486)[rnd(3)]), now)
        else:
            now += rnd(3000)
            t = L.get_timer()
            while t is not None and t <= now:
                L.handle_timer(t)
                t = L.get_timer()
        L.datagrams_to_send()
    assert max(finals.values()) == 1          # a final response reaches the TU once
    L.handle_timer(now + 1000000)
    assert L.get_timer() is None and L.transactions() == []
    assert all(tx.state == TERMINATED for tx, r in clients)


def test_proceeding_and_unanswered_guards():
    # RFC 3261 leaves these to the TU; our policy ends them and tells the TU (EV_TIMEOUT)
    L = TransactionLayer()
    inv = req(b"INVITE", branch=b"z9hG4bKg1")
    tx = L.send_request(inv, 0)
    L.datagrams_to_send()
    L.receive(resp(inv, 180), 100)
    assert drive(L, 10 ** 6)[-1] == (180100, [EV_TIMEOUT], 0) and tx.state == TERMINATED
    m = req(b"MESSAGE", branch=b"z9hG4bKg2")
    st = L.receive(m, 0)[0][1]
    si = L.receive(req(b"INVITE", branch=b"z9hG4bKg3"), 0)[0][1]
    L.datagrams_to_send()
    tr = drive(L, 10 ** 6)
    assert tr == [(32000, [EV_TIMEOUT], 0), (180000, [EV_TIMEOUT], 0)]
    assert st.state == TERMINATED and si.state == TERMINATED
    # a 1xx does not end the non-INVITE guard; the final response does
    n = L.receive(m, 0)[0][1]
    L.send_response(n, resp(m, 180), 10)
    assert L.get_timer() == 32000
    L.send_response(n, resp(m, 200), 20)
    assert L.get_timer() == 32020          # now Timer J
    # timer_c=None: the RFC 3261 behaviour, Proceeding waits for the TU forever
    P = TransactionLayer(timer_c=None)
    tx = P.send_request(inv, 0)
    P.receive(resp(inv, 180), 100)
    assert P.get_timer() is None and tx.state == PROCEEDING
