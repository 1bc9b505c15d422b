//! The query language's core, parsed into a tree: `*`, text terms (`term*` prefixes),
//! `@field:(…)`, `@tag:{a | b}`, `@num:[lo hi]` (with `(` exclusive bounds and ±inf), negation
//! `-`, OR `|`, intersection by juxtaposition, parentheses, `$param`s, and a trailing
//! `=>[KNN k @field $blob [AS name] [EF_RUNTIME n]]`.

use crate::{Error, Result};
use std::collections::HashMap;

/// Nesting bound: deeper queries are refused, so recursion stays bounded.
pub const DEPTH_MAX: usize = 64;

/// A filter over documents.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Every document (`*`).
    All,
    /// A text term in the given fields (all TEXT fields when `None`); `prefix` for `term*`.
    Term {
        fields: Option<Vec<String>>,
        word: String,
        prefix: bool,
    },
    /// Any of the tags in a TAG field; `(value, prefix)`.
    Tag {
        field: String,
        values: Vec<(String, bool)>,
    },
    /// A numeric range; the flags say whether each bound is included.
    Range {
        field: String,
        lo: f64,
        lo_in: bool,
        hi: f64,
        hi_in: bool,
    },
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
}

/// The KNN clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Knn {
    pub k: usize,
    pub field: String,
    pub blob: Vec<u8>,
    /// The name the distance is returned under (`__<field>_score` by default).
    pub score_name: String,
    pub ef: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub filter: Node,
    pub knn: Option<Knn>,
}

/// Characters that end a term (RediSearch's separators, plus the query syntax).
fn separator(c: char) -> bool {
    c.is_whitespace() || ",.<>{}[]\"':;!@#$%^&*()-+=~|/\\".contains(c)
}

struct Parser<'a> {
    s: Vec<char>,
    pos: usize,
    params: &'a HashMap<String, Vec<u8>>,
    depth: usize,
}

fn syntax(pos: usize, near: &str) -> Error {
    Error::Other(format!("Syntax error at offset {pos} near {near}"))
}

/// Parses a query with its PARAMS.
pub fn parse(q: &[u8], params: &HashMap<String, Vec<u8>>) -> Result<Query> {
    let text = String::from_utf8_lossy(q);
    let (filter_text, knn_text) = match text.find("=>") {
        Some(at) => (&text[..at], Some(&text[at + 2..])),
        None => (&text[..], None),
    };
    let mut p = Parser {
        s: filter_text.chars().collect(),
        pos: 0,
        params,
        depth: 0,
    };
    p.ws();
    let filter = if p.at_end() {
        if knn_text.is_none() {
            return Err(syntax(0, "empty query"));
        }
        Node::All
    } else {
        let n = p.union(None)?;
        p.ws();
        if !p.at_end() {
            return Err(p.err());
        }
        n
    };
    let knn = match knn_text {
        Some(t) => Some(parse_knn(t, params, filter_text.chars().count() + 2)?),
        None => None,
    };
    Ok(Query { filter, knn })
}

fn param<'a>(params: &'a HashMap<String, Vec<u8>>, word: &str) -> Result<&'a [u8]> {
    params
        .get(word)
        .map(|v| v.as_slice())
        .ok_or_else(|| Error::Other(format!("No such parameter `{word}`")))
}

/// `[KNN k @field $blob [AS name] [EF_RUNTIME n]]`.
fn parse_knn(t: &str, params: &HashMap<String, Vec<u8>>, offset: usize) -> Result<Knn> {
    let t = t.trim();
    let inner = t
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .or_else(|| t.strip_prefix('{').and_then(|x| x.strip_suffix('}')))
        .ok_or_else(|| syntax(offset, t))?;
    let words: Vec<&str> = inner.split_whitespace().collect();
    let value = |w: &str| -> Result<Vec<u8>> {
        match w.strip_prefix('$') {
            Some(name) => Ok(param(params, name)?.to_vec()),
            None => Ok(w.as_bytes().to_vec()),
        }
    };
    let num = |w: &str| -> Result<usize> {
        let v = value(w)?;
        crate::util::parse_i64(&v)
            .filter(|n| *n >= 0)
            .map(|n| n as usize)
            .ok_or_else(|| syntax(offset, w))
    };
    if words.len() < 4 || !words[0].eq_ignore_ascii_case("KNN") {
        return Err(syntax(offset, inner));
    }
    let k = num(words[1])?;
    let field = words[2]
        .strip_prefix('@')
        .ok_or_else(|| syntax(offset, words[2]))?
        .to_string();
    let blob = value(words[3])?;
    let mut knn = Knn {
        k: k.min(crate::limits::SEARCH_KNN_MAX),
        score_name: format!("__{field}_score"),
        field,
        blob,
        ef: None,
    };
    let mut i = 4;
    while i < words.len() {
        let w = words[i];
        let arg = words.get(i + 1).ok_or_else(|| syntax(offset, w))?;
        if w.eq_ignore_ascii_case("AS") {
            knn.score_name = arg.to_string();
        } else if w.eq_ignore_ascii_case("EF_RUNTIME") {
            knn.ef = Some(num(arg)?.clamp(1, 1 << 20));
        } else if w.eq_ignore_ascii_case("EPSILON") {
        } else {
            return Err(syntax(offset, w));
        }
        i += 2;
    }
    Ok(knn)
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }
    fn peek(&self) -> Option<char> {
        self.s.get(self.pos).copied()
    }
    fn ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }
    fn err(&self) -> Error {
        let near: String = self.s[self.pos.min(self.s.len())..]
            .iter()
            .take(10)
            .collect();
        syntax(self.pos, if near.is_empty() { "end" } else { &near })
    }
    fn eat(&mut self, c: char) -> bool {
        self.ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// `a | b | …`, each an intersection; `fields` scope bare terms (inside `@f:(…)`).
    fn union(&mut self, fields: Option<&[String]>) -> Result<Node> {
        self.depth += 1;
        if self.depth > DEPTH_MAX {
            return Err(Error::Other("Query is too deeply nested".into()));
        }
        let mut alts = vec![self.intersect(fields)?];
        while self.eat('|') {
            alts.push(self.intersect(fields)?);
        }
        self.depth -= 1;
        Ok(if alts.len() == 1 {
            alts.pop().unwrap_or(Node::All)
        } else {
            Node::Or(alts)
        })
    }

    fn intersect(&mut self, fields: Option<&[String]>) -> Result<Node> {
        let mut parts = Vec::new();
        loop {
            self.ws();
            match self.peek() {
                None | Some('|') | Some(')') => break,
                _ => parts.push(self.unary(fields)?),
            }
        }
        match parts.len() {
            0 => Err(self.err()),
            1 => Ok(parts.pop().unwrap_or(Node::All)),
            _ => Ok(Node::And(parts)),
        }
    }

    fn unary(&mut self, fields: Option<&[String]>) -> Result<Node> {
        self.ws();
        if self.peek() == Some('-') {
            self.pos += 1;
            self.depth += 1;
            if self.depth > DEPTH_MAX {
                return Err(Error::Other("Query is too deeply nested".into()));
            }
            let n = self.unary(fields)?;
            self.depth -= 1;
            return Ok(Node::Not(Box::new(n)));
        }
        self.atom(fields)
    }

    fn atom(&mut self, fields: Option<&[String]>) -> Result<Node> {
        self.ws();
        match self.peek() {
            Some('(') => {
                self.pos += 1;
                let n = self.union(fields)?;
                if !self.eat(')') {
                    return Err(self.err());
                }
                Ok(n)
            }
            Some('*') => {
                self.pos += 1;
                Ok(Node::All)
            }
            Some('@') => {
                self.pos += 1;
                self.depth += 1;
                if self.depth > DEPTH_MAX {
                    return Err(Error::Other("Query is too deeply nested".into()));
                }
                let n = self.field_expr();
                self.depth -= 1;
                n
            }
            Some('"') => {
                // A phrase: its terms must all appear (no position check).
                self.pos += 1;
                let mut parts = Vec::new();
                loop {
                    self.ws();
                    match self.peek() {
                        None => return Err(self.err()),
                        Some('"') => {
                            self.pos += 1;
                            break;
                        }
                        Some(c) if separator(c) && c != '\\' && c != '$' => self.pos += 1,
                        _ => parts.push(self.term(fields)?),
                    }
                }
                Ok(if parts.len() == 1 {
                    parts.pop().unwrap_or(Node::All)
                } else {
                    Node::And(parts)
                })
            }
            _ => self.term(fields),
        }
    }

    /// A word: escapes with `\`, `$param`, a trailing `*` for a prefix.
    fn word(&mut self) -> Result<(String, bool)> {
        self.ws();
        if self.peek() == Some('$') {
            self.pos += 1;
            let (name, _) = self.word()?;
            let v = param(self.params, &name)?;
            return Ok((String::from_utf8_lossy(v).into_owned(), false));
        }
        let mut w = String::new();
        while let Some(c) = self.peek() {
            if c == '\\' {
                self.pos += 1;
                if let Some(e) = self.peek() {
                    w.push(e);
                    self.pos += 1;
                }
                continue;
            }
            if separator(c) {
                break;
            }
            w.push(c);
            self.pos += 1;
        }
        if w.is_empty() {
            return Err(self.err());
        }
        let prefix = self.peek() == Some('*');
        if prefix {
            self.pos += 1;
        }
        Ok((w, prefix))
    }

    fn term(&mut self, fields: Option<&[String]>) -> Result<Node> {
        let (word, prefix) = self.word()?;
        Ok(Node::Term {
            fields: fields.map(|f| f.to_vec()),
            word: word.to_lowercase(),
            prefix,
        })
    }

    /// After `@`: `field[|field…]:` then `{tags}`, `[range]`, `(…)` or a term.
    fn field_expr(&mut self) -> Result<Node> {
        let mut names = Vec::new();
        loop {
            let start = self.pos;
            while self
                .peek()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.')
            {
                self.pos += 1;
            }
            if self.pos == start {
                return Err(self.err());
            }
            names.push(self.s[start..self.pos].iter().collect::<String>());
            if self.peek() == Some('|') {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.peek() != Some(':') {
            return Err(self.err());
        }
        self.pos += 1;
        self.ws();
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                let values = self.tags()?;
                Ok(Node::Tag {
                    field: names.swap_remove(0),
                    values,
                })
            }
            Some('[') => {
                self.pos += 1;
                self.range(names.swap_remove(0))
            }
            Some('(') => {
                self.pos += 1;
                let n = self.union(Some(&names))?;
                if !self.eat(')') {
                    return Err(self.err());
                }
                Ok(n)
            }
            Some('-') => {
                self.pos += 1;
                let n = self.atom(Some(&names))?;
                Ok(Node::Not(Box::new(n)))
            }
            _ => self.atom(Some(&names)),
        }
    }

    /// Tag values up to `}`, separated by `|`; spaces inside a value are kept.
    fn tags(&mut self) -> Result<Vec<(String, bool)>> {
        let mut out = Vec::new();
        let mut cur = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err());
            };
            self.pos += 1;
            match c {
                '\\' => {
                    if let Some(e) = self.peek() {
                        cur.push(e);
                        self.pos += 1;
                    }
                }
                '|' | '}' => {
                    let v = cur.trim().to_string();
                    cur.clear();
                    if let Some(name) = v.strip_prefix('$') {
                        let p = param(self.params, name)?;
                        out.push((String::from_utf8_lossy(p).into_owned(), false));
                    } else if let Some(pre) = v.strip_suffix('*') {
                        out.push((pre.to_string(), true));
                    } else if !v.is_empty() {
                        out.push((v, false));
                    }
                    if c == '}' {
                        break;
                    }
                }
                _ => cur.push(c),
            }
        }
        if out.is_empty() {
            return Err(self.err());
        }
        Ok(out)
    }

    fn bound(&mut self) -> Result<(f64, bool)> {
        self.ws();
        let excl = self.peek() == Some('(');
        if excl {
            self.pos += 1;
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| !c.is_whitespace() && c != ']' && c != ',')
        {
            self.pos += 1;
        }
        let w: String = self.s[start..self.pos].iter().collect();
        let v = match w.strip_prefix('$') {
            Some(name) => String::from_utf8_lossy(param(self.params, name)?).into_owned(),
            None => w.clone(),
        };
        let n = match v.to_ascii_lowercase().as_str() {
            "-inf" => f64::NEG_INFINITY,
            "inf" | "+inf" => f64::INFINITY,
            s => s
                .parse::<f64>()
                .ok()
                .filter(|x| !x.is_nan())
                .ok_or_else(|| Error::Other(format!("Expected a number but got `{w}`")))?,
        };
        Ok((n, !excl))
    }

    fn range(&mut self, field: String) -> Result<Node> {
        let (lo, lo_in) = self.bound()?;
        self.ws();
        if self.peek() == Some(',') {
            self.pos += 1;
        }
        let (hi, hi_in) = self.bound()?;
        if !self.eat(']') {
            return Err(self.err());
        }
        Ok(Node::Range {
            field,
            lo,
            lo_in,
            hi,
            hi_in,
        })
    }
}

/// FT.EXPLAIN's rendering of a query tree.
pub fn explain(q: &Query) -> String {
    fn go(n: &Node, depth: usize, out: &mut String) {
        let pad = "  ".repeat(depth);
        match n {
            Node::All => out.push_str(&format!("{pad}<WILDCARD>\n")),
            Node::Term {
                fields,
                word,
                prefix,
            } => {
                let w = if *prefix {
                    format!("PREFIX{{{word}*}}")
                } else {
                    word.clone()
                };
                match fields {
                    Some(f) => out.push_str(&format!("{pad}@{}:{w}\n", f.join("|"))),
                    None => out.push_str(&format!("{pad}{w}\n")),
                }
            }
            Node::Tag { field, values } => {
                out.push_str(&format!("{pad}TAG:@{field} {{\n"));
                for (v, p) in values {
                    out.push_str(&format!("{pad}  {v}{}\n", if *p { "*" } else { "" }));
                }
                out.push_str(&format!("{pad}}}\n"));
            }
            Node::Range {
                field,
                lo,
                lo_in,
                hi,
                hi_in,
            } => {
                let l = if *lo_in { "<=" } else { "<" };
                let h = if *hi_in { "<=" } else { "<" };
                out.push_str(&format!("{pad}NUMERIC {{{lo} {l} @{field} {h} {hi}}}\n"));
            }
            Node::And(v) | Node::Or(v) => {
                let name = if matches!(n, Node::And(_)) {
                    "INTERSECT"
                } else {
                    "UNION"
                };
                out.push_str(&format!("{pad}{name} {{\n"));
                for c in v {
                    go(c, depth + 1, out);
                }
                out.push_str(&format!("{pad}}}\n"));
            }
            Node::Not(c) => {
                out.push_str(&format!("{pad}NOT{{\n"));
                go(c, depth + 1, out);
                out.push_str(&format!("{pad}}}\n"));
            }
        }
    }
    let mut out = String::new();
    match &q.knn {
        Some(k) => {
            out.push_str(&format!(
                "VECTOR {{K={} nearest vectors to `$BLOB` in @{}, AS `{}`}}\n",
                k.k, k.field, k.score_name
            ));
            if q.filter != Node::All {
                go(&q.filter, 1, &mut out);
            }
        }
        None => go(&q.filter, 0, &mut out),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(q: &str) -> Result<Query> {
        let mut params = HashMap::new();
        params.insert("vec".to_string(), b"[1,2]".to_vec());
        params.insert("t".to_string(), b"blue".to_vec());
        params.insert("k".to_string(), b"5".to_vec());
        parse(q.as_bytes(), &params)
    }

    fn term(w: &str) -> Node {
        Node::Term {
            fields: None,
            word: w.into(),
            prefix: false,
        }
    }

    #[test]
    fn terms_and_boolean_structure() {
        assert_eq!(p("*").unwrap().filter, Node::All);
        assert_eq!(p("Hello").unwrap().filter, term("hello"));
        assert_eq!(
            p("a b | c").unwrap().filter,
            Node::Or(vec![Node::And(vec![term("a"), term("b")]), term("c")])
        );
        assert_eq!(
            p("-(a | b) c").unwrap().filter,
            Node::And(vec![
                Node::Not(Box::new(Node::Or(vec![term("a"), term("b")]))),
                term("c")
            ])
        );
        assert_eq!(
            p("hel*").unwrap().filter,
            Node::Term {
                fields: None,
                word: "hel".into(),
                prefix: true
            }
        );
    }

    #[test]
    fn fields_tags_and_ranges() {
        assert_eq!(
            p("@title:(a b)").unwrap().filter,
            Node::And(vec![
                Node::Term {
                    fields: Some(vec!["title".into()]),
                    word: "a".into(),
                    prefix: false
                },
                Node::Term {
                    fields: Some(vec!["title".into()]),
                    word: "b".into(),
                    prefix: false
                }
            ])
        );
        assert_eq!(
            p("@color:{ red | light blue | $t }").unwrap().filter,
            Node::Tag {
                field: "color".into(),
                values: vec![
                    ("red".into(), false),
                    ("light blue".into(), false),
                    ("blue".into(), false)
                ]
            }
        );
        assert_eq!(
            p("@n:[(1 +inf]").unwrap().filter,
            Node::Range {
                field: "n".into(),
                lo: 1.0,
                lo_in: false,
                hi: f64::INFINITY,
                hi_in: true
            }
        );
    }

    #[test]
    fn knn_clauses() {
        let q = p("(@color:{red})=>[KNN $k @v $vec AS dist EF_RUNTIME 20]").unwrap();
        let k = q.knn.unwrap();
        assert_eq!(
            (k.k, k.field.as_str(), k.score_name.as_str()),
            (5, "v", "dist")
        );
        assert_eq!((k.blob.as_slice(), k.ef), (&b"[1,2]"[..], Some(20)));
        let q = p("*=>[KNN 3 @v $vec]").unwrap();
        assert_eq!(q.filter, Node::All);
        assert_eq!(q.knn.unwrap().score_name, "__v_score");
    }

    #[test]
    fn errors_not_panics() {
        for q in [
            "",
            "(",
            "a)",
            "@",
            "@x",
            "@x:{",
            "@x:[1",
            "@x:[a b]",
            "=>[KNN]",
            "*=>[KNN 1 v $vec]",
            "*=>[KNN 1 @v $nope]",
            "$nope",
            "\"a",
            "@x:{}",
            "((((",
        ] {
            assert!(p(q).is_err(), "{q}");
        }
        let deep = "(".repeat(200) + "a" + &")".repeat(200);
        assert!(p(&deep).is_err());
        let negs = "-".repeat(200) + "a";
        assert!(p(&negs).is_err());
        let fields = "@a:".repeat(200) + "x";
        assert!(p(&fields).is_err());
        let fneg = "@a:-".repeat(200) + "x";
        assert!(p(&fneg).is_err());
    }
}
