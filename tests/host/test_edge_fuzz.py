"""The edge core never raises on what the network sends it (hypothesis + mutations)."""
import os

from hypothesis import given, settings, strategies as st

import sipling_host  # noqa: F401
from sipling.sip.message import response
from sipling.sip.parser import parse

from edge_scripted import Device
from sipling_host.edge_core import ACTIVE
from test_edge_core import CK, DEV_ADDR, IK, PAIRS, PROXY, Rig

_RIG = {}


def _rig(tmp_path_factory):
    if "r" not in _RIG:
        rig = Rig(tmp_path_factory.mktemp("fuzz"))
        rig.register("ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
        _RIG["r"] = rig
        _RIG["register"] = rig.dev.first_register()
        _RIG["message"] = (b"MESSAGE sip:door@127.0.0.1:5064 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKf\r\n"
                           b"Route: <sip:door@127.0.0.1:5059;lr>\r\nMax-Forwards: 69\r\n"
                           b"From: <sip:alice@example.test>;tag=a\r\nTo: <sip:door@example.test>\r\nCall-ID: f\r\n"
                           b"CSeq: 1 MESSAGE\r\nContent-Length: 6\r\n\r\nstatus")
        _RIG["esp"] = rig.dev.protected_request(b"MESSAGE", to=b"sip:alice@example.test", body=b"x")
        _RIG["resp"] = response(parse(_RIG["message"]), 200, b"OK").serialize()
    return _RIG["r"]


def _mutate(data, edits):
    b = bytearray(data)
    for pos, val, op in edits:
        if not b:
            break
        i = pos % len(b)
        if op == 0:
            b[i] = val
        elif op == 1:
            del b[i]
        else:
            b.insert(i, val)
    return bytes(b)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255), st.integers(0, 2)), max_size=8)


@settings(max_examples=300, deadline=None)
@given(which=st.sampled_from(["register", "message", "esp", "resp"]), edits=EDITS)
def test_mutated_input_never_raises(tmp_path_factory, which, edits):
    rig = _rig(tmp_path_factory)
    data = _mutate(_RIG[which], edits)
    if which == "register":
        rig.edge.receive_plain(data, DEV_ADDR, 1)
    elif which == "esp":
        rig.edge.receive_esp(data, DEV_ADDR, 1)
    else:
        rig.edge.receive_inner(data, PROXY, 1)
    rig.edge.datagrams_to_send()


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_never_raise(tmp_path_factory, data):
    rig = _rig(tmp_path_factory)
    rig.edge.receive_plain(data, DEV_ADDR, 1)
    rig.edge.receive_inner(data, PROXY, 1)
    rig.edge.receive_esp(data, DEV_ADDR, 1)
    rig.edge.receive_esp(_RIG["esp"][:8] + data, DEV_ADDR, 1)
    rig.edge.datagrams_to_send()


@settings(max_examples=150, deadline=None)
@given(edits=EDITS)
def test_mutated_sip_inside_valid_esp_never_raises(tmp_path_factory, edits):
    """What a device with valid keys sends may still be garbage: the edge answers or drops."""
    rig = _rig(tmp_path_factory)
    if rig.edge.sessions["door"].state != ACTIVE:  # an earlier example ended the association
        rig.dev = Device(IK, CK, PAIRS, rig.man)
        rig.register("ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
    hs = rig.dev._common(b"REGISTER")
    from sipling.sip.message import request as mkreq
    hs += [(b"Security-Verify", x) for x in rig.dev.server_lines]
    hs += [(b"Contact", b"<sip:door@127.0.0.1:5064>")]
    data = _mutate(mkreq(b"REGISTER", b"sip:example.test", hs).serialize(), edits)
    rig.edge.receive_esp(rig.dev.seal_c(data), DEV_ADDR, 1)
    rig.edge.datagrams_to_send()
