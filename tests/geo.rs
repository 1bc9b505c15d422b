//! Geo searches against redis-server: the same random points and the same random searches on
//! shardis (2 shards) and on a reference redis-server 7, raw replies compared byte for byte.
//!
//! The corpus (`diff/geo.redis`) pins chosen cases; this test covers the search geometry
//! broadly: centres anywhere (near the poles' limits and the antimeridian too), radii from 0
//! to the whole Earth, boxes, every unit, COUNT with and without ANY, both orders, and the
//! stored forms with their destination on either shard. Some points share a location, so
//! that searches meet equal distances. Everything is compared exactly, order included, with
//! or without ASC/DESC.

mod common;

use common::{escape, RawConn, RedisServer, Server};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Searches per run: enough to reach the edge cases of the cell estimate, about a second.
const SEARCHES: usize = 600;
const POINTS: usize = 400;

/// A random point: anywhere, or in one of a few clusters (so small searches find some),
/// some at the edges of the map.
fn point(rng: &mut StdRng) -> (f64, f64) {
    const CLUSTERS: [(f64, f64); 5] = [
        (13.4, 38.1),
        (-0.1, 51.5),
        (179.9, 0.0),
        (-179.9, -10.0),
        (20.0, 84.9),
    ];
    match rng.gen_range(0..4) {
        0 => (rng.gen_range(-180.0..=180.0), rng.gen_range(-85.05..=85.05)),
        _ => {
            let (lon, lat) = CLUSTERS[rng.gen_range(0..CLUSTERS.len())];
            let lon: f64 = lon + rng.gen_range(-0.5..0.5);
            let lat: f64 = lat + rng.gen_range(-0.3..0.15);
            (
                lon.clamp(-180.0, 180.0),
                lat.clamp(-85.05112878, 85.05112878),
            )
        }
    }
}

fn unit(rng: &mut StdRng) -> (&'static str, f64) {
    [("m", 1.0), ("km", 1000.0), ("ft", 0.3048), ("mi", 1609.34)][rng.gen_range(0..4)]
}

/// A distance in `unit`, spread over many magnitudes (0 and the whole Earth included).
fn length(rng: &mut StdRng, unit_m: f64) -> String {
    let meters: f64 = match rng.gen_range(0..10) {
        0 => 0.0,
        1 => 30_000_000.0,
        _ => 10f64.powf(rng.gen_range(1.0..7.3)),
    };
    format!("{:.3}", meters / unit_m)
}

/// A random search command, as arguments.
fn search(rng: &mut StdRng, dst: &str) -> Vec<String> {
    let (lon, lat) = point(rng);
    let (u, unit_m) = unit(rng);
    let mut args: Vec<String> = Vec::new();
    let store = rng.gen_range(0..5) == 0;
    let family = rng.gen_range(0..3);
    match family {
        0 => {
            args.extend(["GEOSEARCH".into(), "g".into()]);
            if store {
                args[0] = "GEOSEARCHSTORE".into();
                args.insert(1, dst.into());
            }
            if rng.gen_bool(0.5) {
                args.extend(["FROMLONLAT".into(), lon.to_string(), lat.to_string()]);
            } else {
                args.extend([
                    "FROMMEMBER".into(),
                    format!("p{}", rng.gen_range(0..POINTS)),
                ]);
            }
            if rng.gen_bool(0.5) {
                args.extend(["BYRADIUS".into(), length(rng, unit_m), u.into()]);
            } else {
                let (w, h) = (length(rng, unit_m), length(rng, unit_m));
                args.extend(["BYBOX".into(), w, h, u.into()]);
            }
        }
        1 => args.extend([
            "GEORADIUS".into(),
            "g".into(),
            lon.to_string(),
            lat.to_string(),
            length(rng, unit_m),
            u.into(),
        ]),
        _ => args.extend([
            "GEORADIUSBYMEMBER".into(),
            "g".into(),
            format!("p{}", rng.gen_range(0..POINTS)),
            length(rng, unit_m),
            u.into(),
        ]),
    }
    match rng.gen_range(0..3) {
        0 => args.push("ASC".into()),
        1 => args.push("DESC".into()),
        _ => {}
    }
    if rng.gen_bool(0.4) {
        args.extend(["COUNT".into(), rng.gen_range(1..20).to_string()]);
        if rng.gen_bool(0.3) {
            args.push("ANY".into());
        }
    }
    if store {
        if family == 0 {
            if rng.gen_bool(0.5) {
                args.push("STOREDIST".into());
            }
        } else {
            let word = if rng.gen_bool(0.5) {
                "STORE"
            } else {
                "STOREDIST"
            };
            args.extend([word.into(), dst.into()]);
        }
    } else {
        for w in ["WITHDIST", "WITHCOORD", "WITHHASH"] {
            if rng.gen_bool(0.5) {
                args.push(w.into());
            }
        }
    }
    args
}

fn run(con: &mut RawConn, args: &[String]) -> Vec<u8> {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    con.cmd(&refs)
}

#[test]
fn random_searches_equal_redis() {
    let ours = Server::start(&[]);
    let reference = RedisServer::start();
    let (mut a, mut b) = (ours.raw(), reference.raw());
    let seed = std::env::var("GEO_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut rng = StdRng::seed_from_u64(seed);
    // One point in five repeats an earlier one's location.
    let mut placed: Vec<(f64, f64)> = Vec::new();
    for n in 0..POINTS {
        let (lon, lat) = match placed.len() {
            len if len > 0 && rng.gen_range(0..5) == 0 => placed[rng.gen_range(0..len)],
            _ => point(&mut rng),
        };
        placed.push((lon, lat));
        let add = vec![
            "GEOADD".into(),
            "g".into(),
            lon.to_string(),
            lat.to_string(),
            format!("p{n}"),
        ];
        assert_eq!(run(&mut a, &add), run(&mut b, &add));
    }
    // Destinations on each shard: `d0` and `d3` live on different shards from `g` and each
    // other (slot mod 2).
    let dsts = ["d0", "d3"];
    assert_ne!(common::shard_of(b"d0", 2), common::shard_of(b"d3", 2));
    let mut mismatches = Vec::new();
    let started = std::time::Instant::now();
    for i in 0..SEARCHES {
        let dst = dsts[i % 2];
        let cmd = search(&mut rng, dst);
        let (ra, rb) = (run(&mut a, &cmd), run(&mut b, &cmd));
        let stored = cmd
            .iter()
            .any(|w| w.starts_with("STORE") || w.ends_with("STORE"));
        let (sa, sb) = if stored {
            let read: Vec<String> = ["ZRANGE", dst, "0", "-1", "WITHSCORES"]
                .map(String::from)
                .to_vec();
            (run(&mut a, &read), run(&mut b, &read))
        } else {
            (Vec::new(), Vec::new())
        };
        if ra != rb || sa != sb {
            mismatches.push(format!(
                "{}\n    shardis: {} {}\n    redis:   {} {}",
                cmd.join(" "),
                escape(&ra),
                escape(&sa),
                escape(&rb),
                escape(&sb)
            ));
        }
    }
    eprintln!(
        "{SEARCHES} searches (seed {seed}) in {:?}, {} mismatches",
        started.elapsed(),
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} of {SEARCHES} searches differ:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// GEOADD, and a stored search written back to another shard, serve a BZPOPMIN waiting on
/// the key they write.
#[test]
fn geo_writes_wake_sorted_set_waiters() {
    let server = Server::start(&[]);
    let mut ctl = server.raw();
    for (waiter_shard, source_shard) in [(0, 1), (1, 0)] {
        let key = common::key_on(waiter_shard, "gq");
        let mut w = server.raw();
        w.send(&common::encode(&["BZPOPMIN", &key, "0"]));
        common::wait_blocked(&mut ctl, "bzpopmin", 1);
        assert_eq!(ctl.cmd(&["GEOADD", &key, "0", "0", "origin"]), b":1\r\n");
        let want = format!(
            "*3\r\n${}\r\n{key}\r\n$6\r\norigin\r\n$16\r\n3377699720527872\r\n",
            key.len()
        );
        assert_eq!(String::from_utf8_lossy(&w.read_reply()), want);

        let src = common::key_on(source_shard, "gsrc");
        ctl.cmd(&["GEOADD", &src, "13.361389", "38.115556", "Palermo"]);
        w.send(&common::encode(&["BZPOPMIN", &key, "0"]));
        common::wait_blocked(&mut ctl, "bzpopmin", 1);
        let store = [
            "GEOSEARCHSTORE",
            &key,
            &src,
            "FROMMEMBER",
            "Palermo",
            "BYRADIUS",
            "1",
            "km",
            "STOREDIST",
        ];
        assert_eq!(ctl.cmd(&store), b":1\r\n");
        let reply = String::from_utf8_lossy(&w.read_reply()).into_owned();
        assert!(reply.ends_with("$7\r\nPalermo\r\n$1\r\n0\r\n"), "{reply}");
        assert_eq!(ctl.cmd(&["EXISTS", &key]), b":0\r\n");
    }
}
