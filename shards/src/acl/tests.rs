use super::*;
use crate::cmd::registry;

fn user(rules: &[&str]) -> User {
    let mut u = User::new(b"u", 2, false);
    for r in rules {
        u.apply(r.as_bytes(), false).expect(r);
    }
    u
}

fn describe(u: &User) -> String {
    String::from_utf8(u.describe()).expect("utf8")
}

fn check(u: &User, argv: &[&str]) -> Result<(), Denied> {
    let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
    let l = registry::lookup(&argv).expect("command");
    u.check(l, &argv)
}

#[test]
fn new_and_default_users_describe_as_redis() {
    assert_eq!(
        describe(&User::new(b"x", 2, false)),
        "off resetchannels -@all"
    );
    assert_eq!(describe(&User::default_user(1)), "on nopass ~* &* +@all");
    assert_eq!(
        describe(&user(&["reset"])),
        "off sanitize-payload resetchannels -@all"
    );
}

#[test]
fn rules_round_trip_through_describe() {
    let u = user(&[
        "on",
        ">p1",
        "~foo*",
        "%R~bar*",
        "&ch*",
        "+get",
        "+@hash",
        "-hdel",
        "+config|get",
        "(~x* +set)",
    ]);
    let d = describe(&u);
    assert!(d.starts_with(
        "on #f64551fcd6f07823cb87971cfb91446425da18286b3ab1ef935e0cbd7a69f68a ~foo* %R~bar* resetchannels &ch* -@all +@hash "
    ), "{d}");
    for part in [
        "+get",
        "-hdel",
        "+config|get",
        " (~x* resetchannels -@all +set)",
    ] {
        assert!(d.contains(part), "{d} lacks {part}");
    }
    // Applying the description again gives the same user.
    let mut again = User::new(b"u", 2, false);
    let words: Vec<&[u8]> = d.split(' ').map(|w| w.as_bytes()).collect();
    for op in merge_selector_args(&words).expect("merge") {
        again.apply(&op, false).expect("reapply");
    }
    assert_eq!(describe(&again), d);
}

#[test]
fn categories_are_chosen_as_redis_does() {
    assert_eq!(
        describe(&user(&["+@all", "-@dangerous"])),
        "off resetchannels +@all -@dangerous"
    );
    assert_eq!(
        describe(&user(&["+@all", "-get"])),
        "off resetchannels +@all -get"
    );
    assert_eq!(
        describe(&user(&["+@read", "+@write"])),
        "off resetchannels -@all +@write +@read"
    );
}

#[test]
fn rule_errors_carry_redis_texts() {
    let mut u = User::new(b"u", 2, false);
    assert_eq!(u.apply(b"+nosuchcmd", false), Err(RuleError::Unknown));
    assert_eq!(u.apply(b"+@nosuchcat", false), Err(RuleError::Unknown));
    assert_eq!(u.apply(b"bogus", false), Err(RuleError::Syntax));
    assert_eq!(u.apply(b"#abc", false), Err(RuleError::BadHash));
    assert_eq!(u.apply(b"<nope", false), Err(RuleError::NoSuchPassword));
    assert_eq!(
        u.apply(b"+config|get|x", false),
        Err(RuleError::SubcommandFirstArg)
    );
    assert_eq!(u.apply(b"+select|", false), Err(RuleError::Syntax));
    assert_eq!(u.apply(b"%X~a", false), Err(RuleError::Syntax));
    u.apply(b"allkeys", false).expect("allkeys");
    assert_eq!(u.apply(b"~a", false), Err(RuleError::KeyAfterAll));
    u.apply(b"allchannels", false).expect("allchannels");
    assert_eq!(u.apply(b"&a", false), Err(RuleError::ChannelAfterAll));
}

#[test]
fn checks_follow_commands_keys_and_channels() {
    let u = user(&["on", "nopass", "+get", "+set", "~k*", "%R~r*", "+select|0"]);
    assert_eq!(check(&u, &["get", "k1"]), Ok(()));
    assert_eq!(check(&u, &["get", "r1"]), Ok(()));
    assert_eq!(check(&u, &["set", "r1", "v"]), Err(Denied::Key(1)));
    assert_eq!(check(&u, &["get", "x"]), Err(Denied::Key(1)));
    assert_eq!(check(&u, &["del", "k1"]), Err(Denied::Cmd));
    assert_eq!(check(&u, &["select", "0"]), Ok(()));
    assert_eq!(check(&u, &["select", "1"]), Err(Denied::Cmd));
    // AUTH and friends need no permission.
    assert_eq!(check(&u, &["auth", "a", "b"]), Ok(()));

    let p = user(&["on", "+@pubsub", "&news.*"]);
    assert_eq!(check(&p, &["publish", "news.a", "m"]), Ok(()));
    assert_eq!(
        check(&p, &["publish", "sports", "m"]),
        Err(Denied::Channel(1))
    );
    assert_eq!(
        check(&p, &["subscribe", "news.a", "x"]),
        Err(Denied::Channel(2))
    );
    // A pattern subscription must match a channel rule literally.
    assert_eq!(check(&p, &["psubscribe", "news.*"]), Ok(()));
    assert_eq!(
        check(&p, &["psubscribe", "news.a*"]),
        Err(Denied::Channel(1))
    );

    // Selectors: any one may allow; the reported denial is the highest ranked.
    let s = user(&["on", "+get", "~a*", "(+set ~b*)"]);
    assert_eq!(check(&s, &["get", "a1"]), Ok(()));
    assert_eq!(check(&s, &["set", "b1", "v"]), Ok(()));
    assert_eq!(check(&s, &["set", "a1", "v"]), Err(Denied::Key(1)));
    assert_eq!(check(&s, &["get", "b1"]), Err(Denied::Key(1)));
}

#[test]
fn write_only_patterns_allow_writes_and_existence_checks() {
    let u = user(&["on", "+@all", "%W~w*"]);
    assert_eq!(check(&u, &["set", "w1", "v"]), Ok(()));
    assert_eq!(check(&u, &["get", "w1"]), Err(Denied::Key(1)));
    // SET … GET reads too.
    assert_eq!(check(&u, &["set", "w1", "v", "get"]), Err(Denied::Key(1)));
    assert_eq!(check(&u, &["exists", "w1"]), Ok(()));
    assert_eq!(check(&u, &["del", "w1"]), Ok(()));
}

#[test]
fn passwords_hash_and_match() {
    let mut u = user(&["on", ">secret"]);
    assert!(u.password_ok(b"secret"));
    assert!(!u.password_ok(b"other"));
    u.apply(b"off", false).expect("off");
    assert!(!u.password_ok(b"secret"));
    assert_eq!(
        hash_password(b"p1"),
        "f64551fcd6f07823cb87971cfb91446425da18286b3ab1ef935e0cbd7a69f68a"
    );
}

#[test]
fn selector_arguments_merge() {
    let args: Vec<&[u8]> = vec![b"on", b"(~a", b"+get)", b"(+set)"];
    assert_eq!(
        merge_selector_args(&args).expect("merge"),
        vec![b"on".to_vec(), b"(~a +get)".to_vec(), b"(+set)".to_vec()]
    );
    let bad: Vec<&[u8]> = vec![b"on", b"(~a", b"+get"];
    assert_eq!(merge_selector_args(&bad), Err(1));
}
