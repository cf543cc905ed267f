# sipling.esp: user-space IPsec ESP (RFC 4303, transport mode) for the board and the
# proxy-side edge (same modules under CPython with host_tools' cryptolib shim).
#
#   sa.SADB(rng)                       SA database; rng(n) -> random bytes (os.urandom)
#     .install_3gpp(our_spi_c, our_spi_s, our_port_c, our_port_s,
#                   their_spi_c, their_spi_s, their_port_c, their_port_s,
#                   alg, ealg, ik, ck, now_ms, lifetime_ms) -> sa.Pair (out_c, in_s, in_c, out_s)
#     .install_manual(conf, hwm, persist)   ipsec-man, sequence numbers persisted (seq.py)
#     .lookup(spi, now_ms) / .remove(sa) / .retire(pair, now_ms, grace_ms) / .expire(now_ms)
#     .next_deadline() / .drops, .drop_counts()
#   codec.protect(sa, payload, nh) -> memoryview packet;  codec.seal(sa, n, nh)
#   codec.unprotect(db, pkt, now_ms) -> inbound SA or None;  codec.payload(sa)
#   udp.protect_udp(sa, src_ip, dst_ip, sport, dport, data) -> ESP packet (inner UDP+checksum)
#   udp.open_udp(db, pkt, now_ms) -> (sa, sport, dport, payload) or None
# Algorithms: integ.ALGS (hmac-md5-96, hmac-sha-1-96, hmac-sha-256-128), cipher.ENCS
# (null, aes-cbc, des-ede3-cbc). Sockets live in sipling/shell/esp_carrier.py.
