//! The codec's tests: round trips of every type, a real redis-server 7.0 MEET, and malformed
//! input.

use super::*;

fn header(mtype: u16) -> Header {
    let mut h = Header::new(mtype, name_of("cad5607cb5a30eedeb8ea66297a215992180b723"));
    h.port = 7000;
    h.pport = 0;
    h.cport = 17000;
    h.current_epoch = 7;
    h.config_epoch = 3;
    h.offset = 123_456_789;
    h.myip = "10.1.2.3".into();
    h.flags = flag::MASTER;
    h.state = 1;
    h.slaveof = name_of("f4f3527f3be11471042c5db6cc0e967d823e1b8a");
    set_slot_bit(&mut h.slots, 0);
    set_slot_bit(&mut h.slots, 9);
    set_slot_bit(&mut h.slots, 16383);
    h
}

fn round_trip(m: Message) {
    let bytes = m.encode();
    assert_eq!(frame_len(&bytes), Ok(Some(bytes.len())));
    assert_eq!(frame_len(&bytes[..bytes.len() - 1]), Ok(None));
    let back = decode(&bytes).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.encode(), bytes);
}

fn gossip(i: u8) -> Gossip {
    Gossip {
        name: [b'a' + i; NAME_LEN],
        ping_sent: 1_700_000_000 + i as u32,
        pong_received: 1_700_000_001,
        ip: format!("127.0.0.{i}"),
        port: 7000 + i as u16,
        cport: 17000 + i as u16,
        flags: flag::MASTER | flag::PFAIL,
        pport: 0,
    }
}

#[test]
fn every_type_round_trips() {
    for t in [mtype::PING, mtype::PONG, mtype::MEET] {
        let mut h = header(t);
        h.mflags[0] = mflag::EXT_DATA;
        round_trip(Message {
            header: h,
            body: Body::Ping {
                gossip: (0..5).map(gossip).collect(),
                exts: vec![
                    Ext::Hostname("host-a.example".into()),
                    Ext::ForgottenNode {
                        name: [b'f'; NAME_LEN],
                        ttl: 60,
                    },
                    Ext::Other {
                        kind: 9,
                        data: vec![1; 16],
                    },
                ],
            },
        });
        round_trip(Message {
            header: header(t),
            body: Body::Ping {
                gossip: vec![],
                exts: vec![],
            },
        });
    }
    round_trip(Message {
        header: header(mtype::FAIL),
        body: Body::Fail {
            name: [b'9'; NAME_LEN],
        },
    });
    for t in [mtype::PUBLISH, mtype::PUBLISHSHARD] {
        for (c, m) in [(&b"ch"[..], &b"hello world"[..]), (b"", b""), (b"a", b"")] {
            round_trip(Message {
                header: header(t),
                body: Body::Publish {
                    channel: c.to_vec(),
                    message: m.to_vec(),
                },
            });
        }
    }
    let mut slots = Box::new([0u8; SLOT_BYTES]);
    set_slot_bit(&mut slots, 42);
    round_trip(Message {
        header: header(mtype::UPDATE),
        body: Body::Update {
            config_epoch: 99,
            name: [b'e'; NAME_LEN],
            slots,
        },
    });
    for t in [
        mtype::FAILOVER_AUTH_REQUEST,
        mtype::FAILOVER_AUTH_ACK,
        mtype::MFSTART,
    ] {
        round_trip(Message {
            header: header(t),
            body: Body::Empty,
        });
    }
    for payload in [vec![], vec![7u8; 2], vec![1u8; 100]] {
        round_trip(Message {
            header: header(mtype::MODULE),
            body: Body::Module {
                module_id: 5,
                kind: 3,
                payload,
            },
        });
    }
}

#[test]
fn field_offsets_match_redis() {
    let mut h = header(mtype::PONG);
    h.mflags = [mflag::PAUSED, 0, 0];
    let b = Message {
        header: h,
        body: Body::Ping {
            gossip: vec![gossip(1)],
            exts: vec![Ext::Hostname("abc".into())],
        },
    }
    .encode();
    assert_eq!(b.len(), HEADER_LEN + GOSSIP_LEN + 16);
    assert_eq!(&b[4..8], &(b.len() as u32).to_be_bytes());
    assert_eq!(&b[8..10], &[0, 1]); // version
    assert_eq!(&b[10..12], &7000u16.to_be_bytes());
    assert_eq!(&b[12..14], &[0, 1]); // PONG
    assert_eq!(&b[14..16], &[0, 1]); // count
    assert_eq!(&b[16..24], &7u64.to_be_bytes());
    assert_eq!(&b[24..32], &3u64.to_be_bytes());
    assert_eq!(&b[32..40], &123_456_789u64.to_be_bytes());
    assert_eq!(&b[40..44], b"cad5");
    assert_eq!(b[80], 1); // slot 0: byte 0, bit 0
    assert_eq!(b[81], 0b10); // slot 9: byte 1, bit 1
    assert_eq!(b[80 + 2047], 0x80);
    assert_eq!(&b[2128..2132], b"f4f3");
    assert_eq!(&b[2168..2177], b"10.1.2.3\0");
    assert_eq!(&b[2214..2216], &[0, 1]); // extensions
    assert_eq!(&b[2248..2250], &17000u16.to_be_bytes());
    assert_eq!(&b[2250..2252], &flag::MASTER.to_be_bytes());
    assert_eq!(b[2252], 1);
    assert_eq!(b[2253], mflag::PAUSED | mflag::EXT_DATA);
    let ext = &b[HEADER_LEN + GOSSIP_LEN..];
    assert_eq!(ext, b"\0\0\0\x10\0\0\0\0abc\0\0\0\0\0");
}

/// A MEET sent by a real redis-server 7.0.15 (node cad5607c…, slots 1-3, 100, 16383, config
/// epoch 1, hostname cap-7990), gossiping about its peer f4f3527f… on port 7991.
#[test]
fn decodes_a_redis_meet() {
    let bytes = include_bytes!("testdata/redis7-meet.bin");
    assert_eq!(frame_len(bytes), Ok(Some(bytes.len())));
    let m = decode(bytes).unwrap();
    let h = &m.header;
    assert_eq!(h.mtype, mtype::MEET);
    assert_eq!(
        id_of(&h.sender).as_deref(),
        Some("cad5607cb5a30eedeb8ea66297a215992180b723")
    );
    assert_eq!((h.port, h.cport, h.pport), (7990, 17990, 0));
    assert_eq!((h.current_epoch, h.config_epoch), (1, 1));
    assert_eq!(h.flags, flag::MASTER | flag::MYSELF);
    assert_eq!(h.slaveof, NO_NAME);
    let slots: Vec<usize> = (0..16384).filter(|&s| h.has_slot(s)).collect();
    assert_eq!(slots, vec![1, 2, 3, 100, 16383]);
    let Body::Ping { gossip, exts } = &m.body else {
        panic!("not a ping body");
    };
    assert_eq!(exts, &vec![Ext::Hostname("cap-7990".into())]);
    assert_eq!(gossip.len(), 1);
    let g = &gossip[0];
    assert_eq!(
        id_of(&g.name).as_deref(),
        Some("f4f3527f3be11471042c5db6cc0e967d823e1b8a")
    );
    assert_eq!((g.ip.as_str(), g.port, g.cport), ("127.0.0.1", 7991, 17991));
    assert_eq!(g.flags, flag::MASTER);
    // Re-encoded, it is the same bytes.
    assert_eq!(m.encode(), bytes.to_vec());
}

#[test]
fn malformed_input_is_an_error() {
    assert_eq!(frame_len(b"RCm"), Ok(None));
    assert_eq!(frame_len(b"XXXX\0\0\x10\0"), Err(Error::Signature));
    assert!(frame_len(b"RCmb\0\0\0\x10").is_err());
    assert!(frame_len(b"RCmb\xff\xff\xff\xff").is_err());
    let good = Message {
        header: header(mtype::PING),
        body: Body::Ping {
            gossip: vec![gossip(1), gossip(2)],
            exts: vec![Ext::Hostname("h".into())],
        },
    }
    .encode();
    // Every truncation, and a wrong count, are refused without a panic.
    for n in 0..good.len() {
        let mut cut = good[..n].to_vec();
        if cut.len() >= 8 {
            cut[4..8].copy_from_slice(&(n as u32).to_be_bytes());
        }
        assert!(decode(&cut).is_err(), "{n}");
    }
    let mut bad = good.clone();
    bad[14..16].copy_from_slice(&100u16.to_be_bytes());
    assert!(decode(&bad).is_err());
    let mut bad = good.clone();
    bad[2214..2216].copy_from_slice(&5u16.to_be_bytes());
    assert!(decode(&bad).is_err());
    // An extension whose length runs past the end, or is not a multiple of 8.
    for len in [0u32, 4, 12, 1 << 30] {
        let mut bad = good.clone();
        let at = HEADER_LEN + 2 * GOSSIP_LEN;
        bad[at..at + 4].copy_from_slice(&len.to_be_bytes());
        assert!(decode(&bad).is_err(), "{len}");
    }
    // PUBLISH lengths that overflow the message.
    let mut p = Message {
        header: header(mtype::PUBLISH),
        body: Body::Publish {
            channel: b"c".to_vec(),
            message: b"m".to_vec(),
        },
    }
    .encode();
    p[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(decode(&p).is_err());
    // Random bytes behind a valid frame header never panic.
    let mut seed = 12345u64;
    for _ in 0..2000 {
        let mut b = good.clone();
        for _ in 0..8 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let at = (seed >> 33) as usize % b.len();
            b[at] = (seed >> 20) as u8;
        }
        let _ = frame_len(&b);
        if b.len() >= 8 {
            b[4..8].copy_from_slice(&(good.len() as u32).to_be_bytes());
        }
        let _ = decode(&b);
    }
}

#[test]
fn names_convert() {
    let id = "f4f3527f3be11471042c5db6cc0e967d823e1b8a";
    assert_eq!(id_of(&name_of(id)).as_deref(), Some(id));
    assert_eq!(id_of(&NO_NAME), None);
}
