# Runs ON THE MICROPYTHON UNIX PORT (MICROPYPATH=firmware) for tests/host/test_esp_interop.py.
# usage: micropython mp_peer.py CONFIG.json
# Installs one ipsec-3gpp pair per (alg, ealg) entry, sends one SIP request per pair with
# the ESP-in-UDP shell carrier plus one NAT keep-alive, prints "SENT", then prints one
# JSON line per accepted inbound datagram until `expect` arrived or `timeout_ms` passed,
# and finally a "DONE" line with the drop counters.
import json
import os
import sys
import time

from sipling.esp import sa as sam
from sipling.shell import esp_carrier


def unhex(s):
    import binascii
    return binascii.unhexlify(s)


def main(path):
    with open(path) as f:
        conf = json.load(f)
    db = sam.SADB(os.urandom)
    pairs = []
    for p in conf["pairs"]:
        pairs.append(db.install_3gpp(p["our_spi_c"], p["our_spi_s"], conf["our_port_c"],
                                     conf["our_port_s"], p["their_spi_c"], p["their_spi_s"],
                                     conf["their_port_c"], conf["their_port_s"],
                                     p["alg"], p["ealg"], unhex(p["ik"]), unhex(p["ck"])))
    if conf.get("carrier") == "raw":  # ESP in IP protocol 50 (root)
        car = esp_carrier.RawCarrier(db, "127.0.0.1")
        car.set_peer("127.0.0.1")
    else:
        car = esp_carrier.UdpCarrier(db, "127.0.0.1", conf["my_encap_port"], keepalive_ms=1)
        car.set_peer("127.0.0.1", conf["peer_encap_port"], 0)
    now = 0
    for i, pair in enumerate(pairs):
        msg = conf["sip"].replace("{i}", str(i)).encode()
        car.send_udp(pair.out_c, "127.0.0.1", "127.0.0.1", conf["our_port_c"],
                     conf["their_port_s"], msg, now)
    car.poll(now + 1)  # one RFC 3948 keep-alive (0xFF)
    print("SENT %d keepalives=%d" % (len(pairs), getattr(car, "keepalives_tx", 0)))
    got = 0
    t0 = time.ticks_ms()
    while got < conf["expect"] and time.ticks_diff(time.ticks_ms(), t0) < conf["timeout_ms"]:
        r = car.receive(time.ticks_ms())
        if r is None:
            time.sleep_ms(2)
            continue
        sa, sport, dport, data = r
        got += 1
        print(json.dumps({"spi": sa.spi, "sa": sa.name, "sport": sport, "dport": dport,
                          "payload": bytes(data).decode()}))
    print("DONE " + json.dumps({"drops": db.drop_counts(),
                                "keepalives_rx": getattr(car, "keepalives_rx", 0)}))
    car.close()


main(sys.argv[1])
