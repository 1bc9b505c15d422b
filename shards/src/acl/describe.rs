//! Rules back from permissions: what ACL LIST, ACL GETUSER and ACL SAVE show.
//!
//! A selector's command bitmap is described the way Redis 7.0 does it: start from `+@all`
//! (if the user may run future commands) or `-@all`, then greedily apply the category that
//! best matches what is left, then fix single commands. Categories are tried in Redis's order
//! with its tie-breaking, so the categories chosen match Redis's; single commands come in
//! command-table order (Redis's own order there is a hash table's, and varies between runs).

use super::{index, Bits, Selector, User, FUTURE_BIT, PERM_ALL, PERM_READ, PERM_WRITE};
use crate::cmd::spec::acl::NAMES;
use crate::resp::Reply;

fn count(bits: &Bits, cat: u32) -> (usize, usize) {
    let (mut on, mut off) = (0, 0);
    for (id, c) in index().cmds.iter().enumerate() {
        if c.categories & cat != 0 {
            if bits.get(id) {
                on += 1;
            } else {
                off += 1;
            }
        }
    }
    (on, off)
}

impl Selector {
    /// The command rules (`+@all -@dangerous +info`), without a trailing space.
    pub(super) fn command_rules(&self) -> String {
        let additive = !self.bits.get(FUTURE_BIT);
        let mut rules = String::new();
        let mut fake = Selector::new(false, false);
        if additive {
            rules.push_str("-@all ");
            fake.all_commands(false);
        } else {
            rules.push_str("+@all ");
            fake.all_commands(true);
        }
        let mut temp = Selector::new(false, false);
        temp.bits = self.bits.clone();
        let mut applied = [false; 32];
        loop {
            let mut best = None;
            let (mut mindiff, mut maxsame) = (usize::MAX, 0);
            for (j, &(cat, _)) in NAMES.iter().enumerate() {
                if applied[j] {
                    continue;
                }
                let (on, off) = count(&temp.bits, cat);
                let (diff, same) = if additive { (off, on) } else { (on, off) };
                if same > diff && (diff < mindiff || (diff == mindiff && same > maxsame)) {
                    best = Some(j);
                    mindiff = diff;
                    maxsame = same;
                }
            }
            let Some(j) = best else { break };
            let (cat, name) = NAMES[j];
            fake.change_category(cat, additive);
            temp.change_category(cat, !additive);
            rules.push_str(if additive { "+@" } else { "-@" });
            rules.push_str(name);
            rules.push(' ');
            applied[j] = true;
        }
        let ix = index();
        for &id in &ix.top {
            self.single(id, &mut fake, &mut rules);
            for &s in &ix.cmds[id].subs {
                self.single(s, &mut fake, &mut rules);
            }
            if !self.bits.get(id) {
                if let Some((_, args)) = self.firstargs.iter().find(|(c, _)| *c == id) {
                    for a in args {
                        rules.push('+');
                        rules.push_str(&ix.cmds[id].fullname);
                        rules.push('|');
                        rules.push_str(&String::from_utf8_lossy(a));
                        rules.push(' ');
                    }
                }
            }
        }
        rules.pop();
        rules
    }

    fn single(&self, id: usize, fake: &mut Selector, rules: &mut String) {
        let want = self.bits.get(id);
        if want != fake.bits.get(id) {
            rules.push(if want { '+' } else { '-' });
            rules.push_str(&index().cmds[id].fullname);
            rules.push(' ');
            fake.change(id, want);
        }
    }

    fn key_patterns(&self) -> Vec<String> {
        if self.allkeys {
            return vec!["~*".into()];
        }
        self.keys
            .iter()
            .map(|(p, f)| {
                let prefix = match *f {
                    PERM_ALL => "~",
                    PERM_READ => "%R~",
                    PERM_WRITE => "%W~",
                    _ => "%~",
                };
                format!("{prefix}{}", String::from_utf8_lossy(p))
            })
            .collect()
    }

    fn channel_patterns(&self) -> Vec<String> {
        if self.allchannels {
            return vec!["&*".into()];
        }
        self.channels
            .iter()
            .map(|c| format!("&{}", String::from_utf8_lossy(c)))
            .collect()
    }

    /// Keys, channels and commands, as one line of rules.
    fn describe(&self) -> String {
        let mut out = String::new();
        for k in self.key_patterns() {
            out.push_str(&k);
            out.push(' ');
        }
        if !self.allchannels {
            out.push_str("resetchannels ");
        }
        for c in self.channel_patterns() {
            out.push_str(&c);
            out.push(' ');
        }
        out.push_str(&self.command_rules());
        out
    }

    /// GETUSER's commands/keys/channels fields.
    fn reply_fields(&self, out: &mut Reply) {
        out.bulk(b"commands");
        out.bulk(self.command_rules().as_bytes());
        out.bulk(b"keys");
        out.bulk(self.key_patterns().join(" ").as_bytes());
        out.bulk(b"channels");
        out.bulk(self.channel_patterns().join(" ").as_bytes());
    }
}

impl User {
    fn flag_names(&self) -> Vec<&'static str> {
        let mut f = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            f.push("nopass");
        }
        match self.sanitize {
            super::Sanitize::Skip => f.push("skip-sanitize-payload"),
            super::Sanitize::Always => f.push("sanitize-payload"),
            super::Sanitize::Unset => {}
        }
        f
    }

    /// The user's rules as ACL LIST and the ACL file show them (after `user <name> `).
    pub fn describe(&self) -> Vec<u8> {
        let mut out = String::new();
        for f in self.flag_names() {
            out.push_str(f);
            out.push(' ');
        }
        for p in &self.passwords {
            out.push('#');
            out.push_str(p);
            out.push(' ');
        }
        for s in &self.selectors {
            if s.root {
                out.push_str(&s.describe());
            } else {
                out.push_str(" (");
                out.push_str(&s.describe());
                out.push(')');
            }
        }
        out.into_bytes()
    }

    /// `user <name> <rules>`: one line of ACL LIST or of the ACL file.
    pub fn line(&self) -> Vec<u8> {
        let mut l = b"user ".to_vec();
        l.extend_from_slice(&self.name);
        l.push(b' ');
        l.extend_from_slice(&self.describe());
        l
    }

    /// ACL GETUSER's reply.
    pub fn getuser_reply(&self, out: &mut Reply) {
        out.map(6);
        out.bulk(b"flags");
        let flags = self.flag_names();
        out.set(flags.len());
        for f in flags {
            out.bulk(f.as_bytes());
        }
        out.bulk(b"passwords");
        out.array(self.passwords.len());
        for p in &self.passwords {
            out.bulk(p.as_bytes());
        }
        self.selectors[0].reply_fields(out);
        out.bulk(b"selectors");
        out.array(self.selectors.len() - 1);
        for s in &self.selectors[1..] {
            out.map(3);
            s.reply_fields(out);
        }
    }
}
