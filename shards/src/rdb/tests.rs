use super::*;
use crate::types::redis_listpack::backlen;
use proptest::prelude::*;

/// Reads redis-cli's quoted form of a reply (`\xHH`, `\n`, `\b` and the like) back to bytes.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            i += 1;
            match b[i] {
                b'x' => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'b' => out.push(8),
                b'a' => out.push(7),
                c => out.push(c),
            }
        } else {
            out.push(b[i]);
        }
        i += 1;
    }
    out
}

/// Payloads redis-server 7.0 DUMPed, with the commands that made them.
const REDIS_DUMPS: &[(&str, &str)] = &[
    ("set s hello", r"\x00\x05hello\n\x00cr\xdfve4 \n"),
    (
        "set i 12345",
        r"\x00\xc190\n\x00\x9d\x94\xea'\x93\xfc\b\xb9",
    ),
    (
        "set big 1234567890123",
        r"\x00\r1234567890123\n\x00^\x0c\x12\xae\x04)\xbc\x1e",
    ),
    (
        "set lz a*50",
        r"\x00\xc3\t2\x01aa\xe0%\x00\x01aa\n\x00\t\xacH\xb9\xab\x15\xfb\xc9",
    ),
    (
        "rpush l a 1 -5000 100000 b",
        r"\x12\x01\x02\x18\x18\x00\x00\x00\x05\x00\x81a\x02\x01\x01\xf1x\xec\x03\xf2\xa0\x86\x01\x04\x81b\x02\xff\n\x00$\x82\xef$UF\x02!",
    ),
    (
        "sadd si 1 2 3",
        r"\x0b\x0e\x02\x00\x00\x00\x03\x00\x00\x00\x01\x00\x02\x00\x03\x00\n\x00\xa5\x02\\\xe2mnM\x1b",
    ),
    ("sadd ss a b", r"\x02\x02\x01a\x01b\n\x00\xfed!%\xeb\x03=\r"),
    (
        "hset h f v n 10",
        r"\x10\x12\x12\x00\x00\x00\x04\x00\x81f\x02\x81v\x02\x81n\x02\n\x01\xff\n\x00E\xf8B\xd8\xea\x06\x93\xca",
    ),
    (
        "zadd z 1 a 2.5 b",
        r"\x11\x14\x14\x00\x00\x00\x04\x00\x81a\x02\x01\x01\x81b\x02\x832.5\x04\xff\n\x00\xd4Ln\xa4\xf6D\xd9\xd7",
    ),
];

fn cfg() -> ShardConfig {
    ShardConfig::default()
}

fn load(payload: &[u8]) -> Value {
    decode(verify_payload(payload).unwrap(), &cfg()).unwrap()
}

fn list_of(items: &[&[u8]]) -> Value {
    let mut l = List::new();
    for i in items {
        l.push(End::Tail, i, Fill::default());
    }
    Value::List(l)
}

fn set_of(items: &[&[u8]]) -> Value {
    let mut s = Set::for_member(items[0]);
    for i in items {
        s.add(i, 512);
    }
    Value::Set(s)
}

fn hash_of(pairs: &[(&[u8], &[u8])]) -> Value {
    let mut h = Hash::new();
    for (f, v) in pairs {
        h.set(f, v, hash_limits(&cfg()));
    }
    Value::Hash(h)
}

fn zset_of(pairs: &[(&[u8], f64)]) -> Value {
    let mut z = ZSet::new();
    let lim = zset::Limits {
        max_entries: 128,
        max_value: 64,
    };
    for (m, s) in pairs {
        z.add(m, *s, lim);
    }
    Value::ZSet(z)
}

fn expected(i: usize) -> Value {
    match i {
        0 => Value::Str(Str::from_bytes(b"hello")),
        1 => Value::Str(Str::from_bytes(b"12345")),
        2 => Value::Str(Str::from_bytes(b"1234567890123")),
        3 => Value::Str(Str::from_bytes(&[b'a'; 50])),
        4 => list_of(&[b"a", b"1", b"-5000", b"100000", b"b"]),
        5 => set_of(&[b"1", b"2", b"3"]),
        6 => set_of(&[b"a", b"b"]),
        7 => hash_of(&[(b"f", b"v"), (b"n", b"10")]),
        8 => zset_of(&[(b"a", 1.0), (b"b", 2.5)]),
        _ => unreachable!(),
    }
}

#[test]
fn crc64_check_value() {
    assert_eq!(crc64(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    assert_eq!(crc64(0, b""), 0);
}

#[test]
fn reads_redis_payloads() {
    for (i, (what, payload)) in REDIS_DUMPS.iter().enumerate() {
        let v = load(&unescape(payload));
        assert_eq!(v, expected(i), "{what}");
        assert_eq!(v.encoding(), expected(i).encoding(), "{what}");
    }
}

#[test]
fn writes_what_redis_writes() {
    for (i, (what, payload)) in REDIS_DUMPS.iter().enumerate() {
        assert_eq!(dump(&expected(i)), unescape(payload), "{what}");
    }
}

#[test]
fn footer_checks() {
    let good = dump(&Value::Str(Str::from_bytes(b"hello")));
    assert!(verify_payload(&good).is_ok());
    assert!(verify_payload(&good[..9]).is_err());
    assert!(verify_payload(b"").is_err());
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x20;
        assert!(verify_payload(&bad).is_err(), "flip at {i}");
    }
    // An older version is accepted, a newer one refused.
    let mut body = good[..good.len() - 10].to_vec();
    body.extend_from_slice(&9u16.to_le_bytes());
    let crc = crc64(0, &body);
    let mut older = body.clone();
    older.extend_from_slice(&crc.to_le_bytes());
    assert!(verify_payload(&older).is_ok());
    let mut body = good[..good.len() - 10].to_vec();
    body.extend_from_slice(&11u16.to_le_bytes());
    let crc = crc64(0, &body);
    body.extend_from_slice(&crc.to_le_bytes());
    assert!(verify_payload(&body).is_err());
}

#[test]
fn listpack_back_lengths() {
    let mut buf = [0u8; 5];
    for len in [
        0u64,
        1,
        127,
        128,
        16382,
        16383,
        2_097_150,
        2_097_151,
        268_435_455,
    ] {
        let n = backlen(len, &mut buf);
        // Decode right to left.
        let mut v = 0u64;
        for (k, b) in buf[..n].iter().rev().enumerate() {
            v |= ((b & 127) as u64) << (7 * k);
            assert_eq!(b & 128 != 0, k + 1 < n, "len {len}");
        }
        assert_eq!(v, len);
    }
}

#[test]
fn listpack_integer_encodings_round_trip() {
    let items: Vec<Vec<u8>> = [
        "0",
        "127",
        "128",
        "-1",
        "-4096",
        "4095",
        "4096",
        "-4097",
        "32767",
        "-32768",
        "32768",
        "8388607",
        "-8388608",
        "8388608",
        "2147483647",
        "-2147483648",
        "2147483648",
        "9223372036854775807",
        "-9223372036854775808",
        "007",
        "-0",
        "+1",
        "",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .chain([
        vec![b'x'; 63],
        vec![b'x'; 64],
        vec![b'y'; 4095],
        vec![b'y'; 4096],
    ])
    .collect();
    let mut w = ListpackWriter::default();
    for i in &items {
        w.push(i);
    }
    let lp = w.finish();
    let back: Vec<Vec<u8>> = listpack(&lp)
        .unwrap()
        .iter()
        .map(|e| e.to_bytes().as_slice().to_vec())
        .collect();
    assert_eq!(back, items);
}

#[test]
fn encodings_follow_thresholds() {
    let mut small = cfg();
    small.hash_max_listpack_entries = 1;
    small.zset_max_listpack_entries = 1;
    small.set_max_intset_entries = 2;
    let h = hash_of(&[(b"a", b"1"), (b"b", b"2")]);
    assert_eq!(
        decode(&dump_body(&h), &small).unwrap().encoding(),
        "hashtable"
    );
    let z = zset_of(&[(b"a", 1.0), (b"b", 2.0)]);
    assert_eq!(
        decode(&dump_body(&z), &small).unwrap().encoding(),
        "skiplist"
    );
    let s = set_of(&[b"1", b"2", b"3"]);
    assert_eq!(
        decode(&dump_body(&s), &small).unwrap().encoding(),
        "hashtable"
    );
    // A long hash value in the plain form makes a hashtable; a small plain one a listpack.
    let mut body = vec![kind::HASH];
    put_len(&mut body, 1);
    put_string(&mut body, b"f");
    put_string(&mut body, &[b'v'; 65]);
    assert_eq!(decode(&body, &cfg()).unwrap().encoding(), "hashtable");
    let mut body = vec![kind::HASH];
    put_len(&mut body, 1);
    put_string(&mut body, b"f");
    put_string(&mut body, b"v");
    assert_eq!(decode(&body, &cfg()).unwrap().encoding(), "listpack");
    // A zset in the plain form with few members becomes a listpack.
    let mut body = vec![kind::ZSET_2];
    put_len(&mut body, 1);
    put_string(&mut body, b"m");
    body.extend_from_slice(&1.5f64.to_le_bytes());
    assert_eq!(decode(&body, &cfg()).unwrap().encoding(), "listpack");
}

#[test]
fn refuses_bad_objects() {
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![99],
        vec![kind::STRING],
        vec![kind::STRING, 5, b'a'],
        vec![kind::SET, 0],                   // empty
        vec![kind::SET, 2, 1, b'a', 1, b'a'], // duplicate
        vec![kind::HASH, 1, 1, b'a'],
        vec![kind::ZSET_2, 1, 1, b'a', 0, 0, 0, 0, 0, 0, 0xf8, 0x7f], // NaN
        vec![kind::STRING, 0xc3, 2, 10, 0, b'a'],                     // LZF too short
        vec![kind::STRING, 0xc4],
        vec![kind::LIST_QUICKLIST_2, 1, 3, 1, b'a'], // unknown container
        vec![kind::SET_INTSET, 10, 3, 0, 0, 0, 1, 0, 0, 0, 5, 0], // wrong width
    ];
    for c in cases {
        assert!(decode(&c, &cfg()).is_err(), "{c:?}");
    }
    // An intset out of order.
    let mut body = vec![kind::SET_INTSET];
    let mut is = intset_bytes(&[1, 2]);
    is.swap(8, 10);
    put_string(&mut body, &is);
    assert!(decode(&body, &cfg()).is_err());
}

fn dump_body(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode(v, &mut out);
    out
}

fn bytes_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string().into_bytes()),
        (-200i64..200).prop_map(|n| n.to_string().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..80),
        (1usize..300, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        proptest::collection::vec(b'a'..b'e', 0..5000),
    ]
}

/// A value kind (0 string .. 4 zset) and its items: member, hash value, score.
type Spec = (u8, Vec<(Vec<u8>, Vec<u8>, f64)>);

fn value_strategy() -> impl Strategy<Value = Spec> {
    (
        0u8..5,
        proptest::collection::vec(
            (
                bytes_strategy(),
                bytes_strategy(),
                prop_oneof![
                    any::<f64>().prop_filter("not NaN", |f| !f.is_nan()),
                    (-100i32..100).prop_map(f64::from),
                    Just(f64::INFINITY),
                    Just(f64::NEG_INFINITY),
                ],
            ),
            1..200,
        ),
    )
}

fn build(kind: u8, items: &[(Vec<u8>, Vec<u8>, f64)], c: &ShardConfig) -> Value {
    match kind {
        0 => Value::Str(Str::from_bytes(&items[0].0)),
        1 => {
            let mut l = List::new();
            for (a, _, _) in items {
                l.push(End::Tail, a, Fill::new(c.list_max_listpack_size));
            }
            Value::List(l)
        }
        2 => {
            let mut s = Set::for_member(&items[0].0);
            for (a, _, _) in items {
                s.add(a, c.set_max_intset_entries);
            }
            Value::Set(s)
        }
        3 => {
            let mut h = Hash::new();
            for (a, b, _) in items {
                h.set(a, b, hash_limits(c));
            }
            Value::Hash(h)
        }
        _ => {
            let lim = zset::Limits {
                max_entries: c.zset_max_listpack_entries,
                max_value: c.zset_max_listpack_value,
            };
            let mut z = ZSet::for_first_member(items[0].0.len(), lim);
            for (a, _, s) in items {
                z.add(a, *s, lim);
            }
            Value::ZSet(z)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip((kind, items) in value_strategy(), small in any::<bool>()) {
        let mut c = cfg();
        if small {
            c.hash_max_listpack_entries = 4;
            c.zset_max_listpack_entries = 4;
            c.set_max_intset_entries = 4;
            c.list_max_listpack_size = 3;
        }
        let v = build(kind, &items, &c);
        let payload = dump(&v);
        let back = decode(verify_payload(&payload).unwrap(), &c).unwrap();
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(back.encoding(), v.encoding());
        if let (Value::List(a), Value::List(b)) = (&back, &v) {
            prop_assert!(a.iter().eq(b.iter()));
        }
    }

    #[test]
    fn lzf_round_trip(data in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..3000),
        proptest::collection::vec(b'a'..b'd', 0..3000),
        (1usize..20000, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
    ]) {
        if let Some(packed) = lzf_compress(&data) {
            prop_assert!(packed.len() + 4 <= data.len());
            prop_assert_eq!(lzf_decompress(&packed, data.len()).unwrap(), data);
        }
    }

    #[test]
    fn corruption_never_panics(
        (kind, items) in value_strategy(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        let c = cfg();
        let body = dump_body(&build(kind, &items, &c));
        let mut bad = body.clone();
        for (at, x) in flips {
            let i = at % bad.len();
            bad[i] ^= x.max(1);
        }
        let _ = decode(&bad, &c);
        let _ = decode(&body[..cut % body.len()], &c);
        let _ = lzf_decompress(&bad, cut % 100_000);
        let _ = verify_payload(&bad);
    }

    #[test]
    fn random_bytes_never_panic(kind in any::<u8>(), rest in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut body = vec![kind % 20];
        body.extend_from_slice(&rest);
        let _ = decode(&body, &cfg());
        let _ = listpack(&rest);
        let _ = intset(&rest);
        let _ = ziplist(&rest);
    }
}

/// Ziplist-based objects (written by Redis before 7.0; these bodies were checked to RESTORE in
/// redis-server 7.0).
#[test]
fn reads_ziplists() {
    let zlist: &[u8] = b"\x0a\x41\x63\x63\x01\x00\x00\x60\x01\x00\x00\x0a\x00\x00\x01\x61\x03\xf6\x02\xfe\x9c\x03\xc0\xe8\x03\x04\xf0\x20\x6c\xfb\x05\xd0\x80\x1d\x2c\x04\x06\xe0\x00\x00\x00\x00\x00\xff\xff\xff\x0a\x41\x2c\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\xfe\x2f\x01\x00\x00\xfd\x06\xf1\xff";
    let qlist: &[u8] = b"\x0e\x02\x11\x11\x00\x00\x00\x0d\x00\x00\x00\x02\x00\x00\x01\x61\x03\x01\x62\xff\x40\x74\x74\x00\x00\x00\x0c\x00\x00\x00\x02\x00\x00\xf4\x02\x40\x64\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\xff";
    let zhash: &[u8] = b"\x0d\x16\x16\x00\x00\x00\x13\x00\x00\x00\x04\x00\x00\x01\x66\x03\x01\x76\x03\x01\x6e\x03\xfb\xff";
    let zzset: &[u8] = b"\x0c\x21\x21\x00\x00\x00\x1a\x00\x00\x00\x06\x00\x00\x01\x61\x03\xf2\x02\x01\x62\x03\x03\x32\x2e\x35\x05\x01\x63\x03\x04\x2d\x69\x6e\x66\xff";
    let big = vec![b'x'; 300];
    let want: Vec<&[u8]> = vec![
        b"a",
        b"5",
        b"-100",
        b"1000",
        b"-300000",
        b"70000000",
        b"-1099511627776",
        &big,
        b"12",
        b"0",
    ];
    assert_eq!(decode(zlist, &cfg()).unwrap(), list_of(&want));
    let c100 = vec![b'c'; 100];
    assert_eq!(
        decode(qlist, &cfg()).unwrap(),
        list_of(&[b"a", b"b", b"3", &c100])
    );
    let h = decode(zhash, &cfg()).unwrap();
    assert_eq!(h, hash_of(&[(b"f", b"v"), (b"n", b"10")]));
    assert_eq!(h.encoding(), "listpack");
    let z = decode(zzset, &cfg()).unwrap();
    assert_eq!(
        z,
        zset_of(&[(b"a", 1.0), (b"b", 2.5), (b"c", f64::NEG_INFINITY)])
    );
    assert_eq!(z.encoding(), "listpack");
    // Every truncation and a wrong previous-entry length are refused.
    for body in [zlist, qlist, zhash, zzset] {
        for cut in 0..body.len() {
            assert!(decode(&body[..cut], &cfg()).is_err());
        }
    }
    let mut bad = zhash.to_vec();
    bad[15] ^= 1; // the second entry's previous length
    assert!(decode(&bad, &cfg()).is_err());
}

/// A stream with two nodes, a deleted entry, a trim, and a group with two consumers.
fn sample_stream() -> Stream {
    use crate::types::stream::{Limits, Trim, TrimBy};
    let lim = Limits {
        node_max_bytes: 0,
        node_max_entries: 4,
    };
    let mut s = Stream::new();
    for i in 1..=10u64 {
        let v = (i * 1000).to_string();
        s.append(
            StreamId::new(i, 0),
            &[b"f", v.as_bytes(), b"name", b"x"],
            lim,
        );
    }
    assert!(s.delete(StreamId::new(6, 0)));
    s.max_deleted_id = StreamId::new(6, 0);
    let t = Trim {
        by: TrimBy::MaxLen(7),
        approx: false,
        limit: 0,
    };
    s.trim(t, lim);
    let mut g = Group::new(StreamId::new(5, 0), Some(5));
    g.assign(StreamId::new(4, 0), b"alice", 1_700_000_000_000, 2, 1);
    g.assign(StreamId::new(5, 0), b"bob", 1_700_000_000_001, 1, 1);
    g.consumer(b"carol", 77);
    s.groups.insert(Box::from(&b"g"[..]), g);
    s
}

/// `s` as an older (15: Redis 5/6) or newer (21: Redis 7.2) stream type writes it.
fn stream_body_as(kind: u8, s: &Stream) -> Vec<u8> {
    let mut out = vec![kind];
    put_len(&mut out, s.nodes().len() as u64);
    for (id, node) in s.nodes() {
        put_string(&mut out, &id.to_be_bytes());
        put_string(&mut out, node);
    }
    put_len(&mut out, s.len());
    let mut ids = vec![s.last_id];
    if kind != kind::STREAM_LISTPACKS {
        ids.extend([s.first_id, s.max_deleted_id]);
    }
    for id in ids {
        put_len(&mut out, id.ms);
        put_len(&mut out, id.seq);
    }
    if kind != kind::STREAM_LISTPACKS {
        put_len(&mut out, s.entries_added);
    }
    put_len(&mut out, s.groups.len() as u64);
    for (name, g) in &s.groups {
        put_string(&mut out, name);
        put_len(&mut out, g.last_id.ms);
        put_len(&mut out, g.last_id.seq);
        if kind != kind::STREAM_LISTPACKS {
            put_len(&mut out, g.entries_read.unwrap_or(u64::MAX));
        }
        put_len(&mut out, g.pel.len() as u64);
        for (id, n) in &g.pel {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&n.delivery_time_ms.to_le_bytes());
            put_len(&mut out, n.delivery_count);
        }
        put_len(&mut out, g.consumers.len() as u64);
        for (cname, c) in &g.consumers {
            put_string(&mut out, cname);
            out.extend_from_slice(&c.seen_time_ms.to_le_bytes());
            if kind == kind::STREAM_LISTPACKS_3 {
                out.extend_from_slice(&12345u64.to_le_bytes());
            }
            put_len(&mut out, c.pending.len() as u64);
            for id in &c.pending {
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
    }
    out
}

#[test]
fn streams_of_every_rdb_type() {
    let s = sample_stream();
    let v = Value::Stream(Box::new(s.clone()));
    let body = dump_body(&v);
    assert_eq!(body[0], kind::STREAM_LISTPACKS_2);
    assert_eq!(decode(&body, &cfg()).unwrap(), v);
    assert_eq!(
        decode(&stream_body_as(kind::STREAM_LISTPACKS_2, &s), &cfg()),
        Ok(v.clone())
    );
    assert_eq!(
        decode(&stream_body_as(kind::STREAM_LISTPACKS_3, &s), &cfg()),
        Ok(v)
    );
    // Redis 5/6 kept no first id, tombstone or counters: they are derived as Redis 7 does.
    let Ok(Value::Stream(old)) = decode(&stream_body_as(kind::STREAM_LISTPACKS, &s), &cfg()) else {
        panic!("type 15 decodes");
    };
    assert_eq!(old.first_id, s.edge_id(false).unwrap());
    assert_eq!(old.max_deleted_id, StreamId::MIN);
    assert_eq!(old.entries_added, s.len());
    assert_eq!(old.groups[&b"g"[..]].entries_read, None);
    assert_eq!(old.groups[&b"g"[..]].pel, s.groups[&b"g"[..]].pel);
    // Every kind steps over the same extent it decodes.
    for k in [15, 19, 21] {
        let body = stream_body_as(k, &s);
        let mut r = Reader {
            buf: &body[1..],
            pos: 0,
        };
        skip_body(&mut r, k).unwrap();
        assert_eq!(r.pos, body.len() - 1);
    }
}

#[test]
fn refuses_inconsistent_streams() {
    let s = sample_stream();
    let mut bad = s.clone();
    bad.last_id = StreamId::new(3, 0); // below the last entry
    assert!(decode(&dump_body(&Value::Stream(Box::new(bad))), &cfg()).is_err());
    let mut bad = s.clone();
    bad.entries_added = 2; // below the length
    assert!(decode(&dump_body(&Value::Stream(Box::new(bad))), &cfg()).is_err());
    // A consumer naming an id the group's PEL lacks, and a PEL entry nobody owns.
    let mut bad = s.clone();
    let g = bad.groups.get_mut(&b"g"[..]).unwrap();
    g.consumers
        .get_mut(&b"carol"[..])
        .unwrap()
        .pending
        .insert(StreamId::new(9, 0));
    assert!(decode(&dump_body(&Value::Stream(Box::new(bad))), &cfg()).is_err());
    let mut bad = s.clone();
    let g = bad.groups.get_mut(&b"g"[..]).unwrap();
    g.consumers.get_mut(&b"bob"[..]).unwrap().pending.clear();
    assert!(decode(&dump_body(&Value::Stream(Box::new(bad))), &cfg()).is_err());
    // Every truncation fails.
    let body = dump_body(&Value::Stream(Box::new(s)));
    for cut in 0..body.len() {
        assert!(decode(&body[..cut], &cfg()).is_err(), "cut {cut}");
    }
}

/// Uses a decoded stream the way commands do: none of it may panic.
fn exercise(s: &mut Stream) {
    use crate::types::stream::{Limits, Trim, TrimBy};
    let lim = Limits::default();
    let mut n = 0;
    for rev in [false, true] {
        s.scan(StreamId::MIN, StreamId::MAX, rev, &mut |_, f| {
            n += f.len();
            true
        });
    }
    let first = s.edge_id(false);
    let _ = s.edge_id(true);
    if let Some(id) = first {
        assert!(s.contains(id));
        assert!(s.delete(id));
    }
    for g in s.groups.values() {
        let _ = s.group_lag(g);
    }
    if let Some(id) = s.last_id.next() {
        s.append(id, &[b"f", b"v"], lim);
    }
    let t = Trim {
        by: TrimBy::MaxLen(1),
        approx: false,
        limit: 0,
    };
    s.trim(t, lim);
    let _ = s.mem_bytes();
}

proptest! {
    #[test]
    fn corrupt_stream_payloads_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..4),
    ) {
        let body = dump_body(&Value::Stream(Box::new(sample_stream())));
        let mut b = body.clone();
        for (at, x) in flips {
            b[at.index(body.len())] ^= x;
        }
        if let Ok(Value::Stream(mut s)) = decode(&b, &cfg()) {
            exercise(&mut s);
        }
    }
}
