//! The small arithmetic language of `start_sector` and `value` in rawprogram and patch files.
//!
//! Vendor files say where things go relative to the end of a disk whose size is only known
//! once a device is attached (`NUM_DISK_SECTORS-33.`), and patch GPT checksums computed on the
//! device after writing (`CRC32(1.,92.)`). Other tools pass these to Python's `eval`; this is
//! a parser for exactly the grammar below and nothing else:
//!
//! ```text
//! expr   := term (('+' | '-') term)*
//! term   := factor (('*' | '/') factor)*
//! factor := number | 'NUM_DISK_SECTORS' | 'CRC32' '(' expr ',' expr ')' | '(' expr ')'
//! number := digits ['.'] | '0x' hexdigits
//! ```
//!
//! Numbers are decimal whether or not they carry the trailing `.` (the Trace32 spelling for
//! "decimal" that vendor files use). Expressions are parsed when a package is packed, so a
//! malformed one never reaches a signed manifest, and stored in a canonical text form; they
//! are evaluated at flash time against an [`ExprContext`] that knows the disk. Every
//! intermediate value is a non-negative 64-bit integer: overflow, a negative value and
//! division by zero are errors, never wrapped or clamped.

use std::fmt;

/// Longest expression text accepted, in bytes, both as written and in canonical form (which
/// may be longer: `1+1` becomes `1.+1.`); real ones are under 40.
pub const MAX_EXPR_LEN: usize = 256;
/// Deepest nesting of parentheses and `CRC32(…)` accepted.
pub const MAX_DEPTH: usize = 16;
/// Most bytes one `CRC32(…)` may cover. A GPT partition array is 16 KiB; the cap keeps a
/// bad expression from reading a whole disk.
pub const MAX_CRC32_LEN: u64 = 1 << 20;

/// What evaluating an expression needs from the device: the size of the disk (LUN) the
/// expression is about, and checksums over bytes already on it.
///
/// The driver builds one context per LUN, after the programs have been written, because
/// patch values checksum the freshly written GPT.
pub trait ExprContext {
    /// Why reading the device failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The LUN's size in sectors of the expression's sector size (`NUM_DISK_SECTORS`).
    fn num_disk_sectors(&self) -> u64;

    /// CRC-32 (IEEE, as `crc32fast` computes it) over `len` bytes of the LUN starting at
    /// sector `start_sector`.
    fn crc32(&mut self, start_sector: u64, len: u64) -> Result<u32, Self::Error>;
}

/// A parsed expression with its canonical text.
///
/// Two expressions are equal when their canonical texts are; the text is what the signed
/// manifest stores, and positions in evaluation errors refer to it.
#[derive(Clone)]
pub struct Expr {
    text: String,
    root: Node,
}

#[derive(Debug, Clone)]
enum Node {
    Number(u64),
    DiskSectors,
    Crc32 {
        at: usize,
        start: Box<Node>,
        len: Box<Node>,
    },
    Binary {
        at: usize,
        op: Op,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

impl Op {
    fn precedence(self) -> u8 {
        match self {
            Op::Add | Op::Sub => 1,
            Op::Mul | Op::Div => 2,
        }
    }

    fn symbol(self) -> char {
        match self {
            Op::Add => '+',
            Op::Sub => '-',
            Op::Mul => '*',
            Op::Div => '/',
        }
    }
}

/// Why an expression could not be parsed or evaluated. Offsets are byte offsets into the
/// text being parsed (for evaluation: the canonical text, [`Expr::as_str`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// Nothing but whitespace.
    #[error("the expression is empty")]
    Empty,
    /// Longer than [`MAX_EXPR_LEN`].
    #[error("the expression is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Parentheses or `CRC32` nested deeper than [`MAX_DEPTH`].
    #[error("at offset {offset}: parentheses and CRC32 nest deeper than {max} levels")]
    TooDeep {
        /// Where the level too many opens.
        offset: usize,
        /// The cap.
        max: usize,
    },
    /// A token that cannot appear at this point.
    #[error("at offset {offset}: expected {expected}, found {found}")]
    Expected {
        /// Where.
        offset: usize,
        /// What the grammar allows here.
        expected: &'static str,
        /// What is there instead.
        found: String,
    },
    /// A name other than `NUM_DISK_SECTORS` and `CRC32`.
    #[error("at offset {offset}: unknown name {name:?} (only NUM_DISK_SECTORS and CRC32 exist)")]
    UnknownIdentifier {
        /// Where.
        offset: usize,
        /// The name.
        name: String,
    },
    /// A malformed or too large number.
    #[error("at offset {offset}: invalid number {text:?}: {reason}")]
    InvalidNumber {
        /// Where.
        offset: usize,
        /// The number as written.
        text: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A value above `u64::MAX`.
    #[error("at offset {offset}: the result does not fit in 64 bits")]
    Overflow {
        /// The operator.
        offset: usize,
    },
    /// A subtraction that would go below zero.
    #[error("at offset {offset}: the result would be negative")]
    Negative {
        /// The operator.
        offset: usize,
    },
    /// Division by zero.
    #[error("at offset {offset}: division by zero")]
    DivisionByZero {
        /// The operator.
        offset: usize,
    },
    /// A `CRC32` over more than [`MAX_CRC32_LEN`] bytes.
    #[error("at offset {offset}: CRC32 over {len} bytes; at most {max} are allowed")]
    Crc32TooLong {
        /// The `CRC32`.
        offset: usize,
        /// The requested length.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// A signed manifest holding an expression in other than canonical form.
    #[error("the expression {text:?} is not in canonical form ({canonical:?})")]
    NotCanonical {
        /// As stored.
        text: String,
        /// As it should be.
        canonical: String,
    },
}

/// Why evaluating an expression failed: the arithmetic, or the device.
#[derive(Debug, thiserror::Error)]
pub enum EvalError<E: std::error::Error + 'static> {
    /// The arithmetic failed.
    #[error(transparent)]
    Expr(#[from] ExprError),
    /// The context could not compute a `CRC32`.
    #[error("at offset {offset}: computing CRC32 on the device failed: {source}")]
    Context {
        /// The `CRC32`.
        offset: usize,
        /// The context's error.
        #[source]
        source: E,
    },
}

impl Expr {
    /// Parses `text` (vendor spelling: whitespace, trailing dots and hex allowed).
    pub fn parse(text: &str) -> Result<Self, ExprError> {
        let root = Parser::new(text)?.parse()?;
        let mut canonical = String::new();
        render(&root, 0, false, &mut canonical);
        // Re-parse the canonical text so evaluation offsets refer to the text that is kept.
        let root = Parser::new(&canonical)?.parse()?;
        Ok(Expr {
            text: canonical,
            root,
        })
    }

    /// The canonical text: no spaces, decimal numbers with a trailing `.`, only the
    /// parentheses the tree needs. Parsing it gives the same tree.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Evaluates the expression against a device context.
    pub fn eval<C: ExprContext>(&self, ctx: &mut C) -> Result<u64, EvalError<C::Error>> {
        eval(&self.root, ctx)
    }
}

fn eval<C: ExprContext>(node: &Node, ctx: &mut C) -> Result<u64, EvalError<C::Error>> {
    match node {
        Node::Number(value) => Ok(*value),
        Node::DiskSectors => Ok(ctx.num_disk_sectors()),
        Node::Crc32 { at, start, len } => {
            let start = eval(start, ctx)?;
            let len = eval(len, ctx)?;
            if len > MAX_CRC32_LEN {
                return Err(ExprError::Crc32TooLong {
                    offset: *at,
                    len,
                    max: MAX_CRC32_LEN,
                }
                .into());
            }
            ctx.crc32(start, len)
                .map(u64::from)
                .map_err(|source| EvalError::Context {
                    offset: *at,
                    source,
                })
        }
        Node::Binary { at, op, lhs, rhs } => {
            let (l, r) = (eval(lhs, ctx)?, eval(rhs, ctx)?);
            let offset = *at;
            let result = match op {
                Op::Add => l.checked_add(r).ok_or(ExprError::Overflow { offset }),
                Op::Sub => l.checked_sub(r).ok_or(ExprError::Negative { offset }),
                Op::Mul => l.checked_mul(r).ok_or(ExprError::Overflow { offset }),
                Op::Div => l.checked_div(r).ok_or(ExprError::DivisionByZero { offset }),
            };
            Ok(result?)
        }
    }
}

/// Writes `node` canonically; `parent` is the enclosing operator's precedence (0 at the top
/// and inside `CRC32`), `right` whether `node` is its right operand.
fn render(node: &Node, parent: u8, right: bool, out: &mut String) {
    match node {
        Node::Number(value) => out.push_str(&format!("{value}.")),
        Node::DiskSectors => out.push_str(DISK_SECTORS),
        Node::Crc32 { start, len, .. } => {
            out.push_str(CRC32);
            out.push('(');
            render(start, 0, false, out);
            out.push(',');
            render(len, 0, false, out);
            out.push(')');
        }
        Node::Binary { op, lhs, rhs, .. } => {
            let own = op.precedence();
            let parens = own < parent || (right && own == parent);
            if parens {
                out.push('(');
            }
            render(lhs, own, false, out);
            out.push(op.symbol());
            render(rhs, own, true, out);
            if parens {
                out.push(')');
            }
        }
    }
}

const DISK_SECTORS: &str = "NUM_DISK_SECTORS";
const CRC32: &str = "CRC32";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Number(u64),
    Name(&'a str),
    Op(Op),
    Open,
    Close,
    Comma,
    End,
}

impl Token<'_> {
    fn describe(&self) -> String {
        match self {
            Token::Number(value) => format!("the number {value}"),
            Token::Name(name) => format!("{name:?}"),
            Token::Op(op) => format!("'{}'", op.symbol()),
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            Token::Comma => "','".into(),
            Token::End => "the end of the expression".into(),
        }
    }
}

/// Recursive descent over a token stream produced on demand.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
    /// The next token and its offset.
    next: (Token<'a>, usize),
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Result<Self, ExprError> {
        if text.len() > MAX_EXPR_LEN {
            return Err(ExprError::TooLong {
                len: text.len(),
                max: MAX_EXPR_LEN,
            });
        }
        if text.trim().is_empty() {
            return Err(ExprError::Empty);
        }
        let mut parser = Parser {
            text,
            pos: 0,
            next: (Token::End, 0),
        };
        parser.next = parser.lex()?;
        Ok(parser)
    }

    fn parse(mut self) -> Result<Node, ExprError> {
        let root = self.expr(0)?;
        self.expect(Token::End, "an operator or the end of the expression")?;
        Ok(root)
    }

    fn advance(&mut self) -> Result<(Token<'a>, usize), ExprError> {
        let current = self.next;
        self.next = self.lex()?;
        Ok(current)
    }

    fn expect(&mut self, token: Token<'a>, expected: &'static str) -> Result<(), ExprError> {
        let (found, offset) = self.next;
        if found != token {
            return Err(ExprError::Expected {
                offset,
                expected,
                found: found.describe(),
            });
        }
        self.advance()?;
        Ok(())
    }

    fn expr(&mut self, depth: usize) -> Result<Node, ExprError> {
        self.binary(depth, 1)
    }

    /// Parses operands joined by operators of precedence `level` or higher, left-associative.
    fn binary(&mut self, depth: usize, level: u8) -> Result<Node, ExprError> {
        let operand = |p: &mut Self| {
            if level == 1 {
                p.binary(depth, 2)
            } else {
                p.factor(depth)
            }
        };
        let mut lhs = operand(self)?;
        while let (Token::Op(op), at) = self.next {
            if op.precedence() != level {
                break;
            }
            self.advance()?;
            let rhs = operand(self)?;
            lhs = Node::Binary {
                at,
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
        Ok(lhs)
    }

    fn factor(&mut self, depth: usize) -> Result<Node, ExprError> {
        let (token, offset) = self.advance()?;
        let deeper = || {
            if depth >= MAX_DEPTH {
                Err(ExprError::TooDeep {
                    offset,
                    max: MAX_DEPTH,
                })
            } else {
                Ok(depth + 1)
            }
        };
        match token {
            Token::Number(value) => Ok(Node::Number(value)),
            Token::Name(DISK_SECTORS) => Ok(Node::DiskSectors),
            Token::Name(CRC32) => {
                let inner = deeper()?;
                self.expect(Token::Open, "'(' after CRC32")?;
                let start = self.expr(inner)?;
                self.expect(
                    Token::Comma,
                    "',' between the CRC32 start sector and length",
                )?;
                let len = self.expr(inner)?;
                self.expect(Token::Close, "')' closing CRC32")?;
                Ok(Node::Crc32 {
                    at: offset,
                    start: Box::new(start),
                    len: Box::new(len),
                })
            }
            Token::Name(name) => Err(ExprError::UnknownIdentifier {
                offset,
                name: name.to_owned(),
            }),
            Token::Open => {
                let inner = self.expr(deeper()?)?;
                self.expect(Token::Close, "')'")?;
                Ok(inner)
            }
            other => Err(ExprError::Expected {
                offset,
                expected: "a number, NUM_DISK_SECTORS, CRC32 or '('",
                found: other.describe(),
            }),
        }
    }

    /// Reads the token at `self.pos`, skipping whitespace.
    fn lex(&mut self) -> Result<(Token<'a>, usize), ExprError> {
        let bytes = self.text.as_bytes();
        while bytes.get(self.pos).is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(&first) = bytes.get(start) else {
            return Ok((Token::End, start));
        };
        let word_end = |from: usize| {
            (from..bytes.len())
                .find(|&i| !(bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_'))
                .unwrap_or(bytes.len())
        };
        let single = match first {
            b'+' => Some(Token::Op(Op::Add)),
            b'-' => Some(Token::Op(Op::Sub)),
            b'*' => Some(Token::Op(Op::Mul)),
            b'/' => Some(Token::Op(Op::Div)),
            b'(' => Some(Token::Open),
            b')' => Some(Token::Close),
            b',' => Some(Token::Comma),
            _ => None,
        };
        if let Some(token) = single {
            self.pos += 1;
            return Ok((token, start));
        }
        if first.is_ascii_alphabetic() || first == b'_' {
            self.pos = word_end(start);
            return Ok((Token::Name(&self.text[start..self.pos]), start));
        }
        if first.is_ascii_digit() {
            let mut end = word_end(start);
            if bytes.get(end) == Some(&b'.') {
                end += 1;
            }
            // A number must not run into more letters, digits or dots (`1.5`, `2..`, `0x1.`).
            if bytes
                .get(end)
                .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.'))
            {
                end = word_end(end + 1);
                return Err(invalid_number(
                    start,
                    &self.text[start..end],
                    "not a number",
                ));
            }
            self.pos = end;
            return number(start, &self.text[start..end]).map(|n| (Token::Number(n), start));
        }
        let found = self.text[start..].chars().next().unwrap_or('\0');
        Err(ExprError::Expected {
            offset: start,
            expected: "a number, a name, an operator or a parenthesis",
            found: format!("{found:?}"),
        })
    }
}

/// Parses one number token: decimal with an optional trailing `.`, or `0x` hex.
fn number(offset: usize, text: &str) -> Result<u64, ExprError> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) if hex.ends_with('.') => {
            return Err(invalid_number(
                offset,
                text,
                "a hex number cannot end in '.'",
            ))
        }
        Some(hex) => (hex, 16),
        None => (text.strip_suffix('.').unwrap_or(text), 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(invalid_number(offset, text, "not a number"));
    }
    u64::from_str_radix(digits, radix)
        .map_err(|_| invalid_number(offset, text, "larger than 64 bits"))
}

fn invalid_number(offset: usize, text: &str, reason: &'static str) -> ExprError {
    ExprError::InvalidNumber {
        offset,
        text: text.to_owned(),
        reason,
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Expr {}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({:?})", self.text)
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The signed manifest holds only canonical text, so one expression has one spelling.
impl TryFrom<String> for Expr {
    type Error = ExprError;
    fn try_from(text: String) -> Result<Self, ExprError> {
        let expr = Expr::parse(&text)?;
        if expr.text != text {
            return Err(ExprError::NotCanonical {
                text,
                canonical: expr.text,
            });
        }
        Ok(expr)
    }
}

impl From<Expr> for String {
    fn from(expr: Expr) -> String {
        expr.text
    }
}

impl serde::Serialize for Expr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Expr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Expr::try_from(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recognises one expected error.
    type Check = fn(&ExprError) -> bool;

    /// A disk in memory: `sectors` sectors of 512 bytes.
    struct Disk {
        bytes: Vec<u8>,
        crc_calls: usize,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("read past the end of the disk")]
    struct PastEnd;

    impl ExprContext for Disk {
        type Error = PastEnd;
        fn num_disk_sectors(&self) -> u64 {
            self.bytes.len() as u64 / 512
        }
        fn crc32(&mut self, start_sector: u64, len: u64) -> Result<u32, PastEnd> {
            self.crc_calls += 1;
            let start = usize::try_from(start_sector * 512).map_err(|_| PastEnd)?;
            let end = start + usize::try_from(len).map_err(|_| PastEnd)?;
            let bytes = self.bytes.get(start..end).ok_or(PastEnd)?;
            Ok(crc32fast::hash(bytes))
        }
    }

    fn disk(sectors: usize) -> Disk {
        Disk {
            bytes: (0..sectors * 512).map(|i| (i * 7 % 251) as u8).collect(),
            crc_calls: 0,
        }
    }

    fn value(text: &str) -> u64 {
        Expr::parse(text).unwrap().eval(&mut disk(64)).unwrap()
    }

    fn eval_err(text: &str) -> ExprError {
        match Expr::parse(text).unwrap().eval(&mut disk(64)) {
            Err(EvalError::Expr(e)) => e,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn numbers_and_precedence() {
        assert_eq!(value("34"), 34);
        assert_eq!(value("34."), 34);
        assert_eq!(value("0x10-10."), 6);
        assert_eq!(value("0XfF"), 255);
        assert_eq!(value("007"), 7);
        assert_eq!(value("2+3*4"), 14);
        assert_eq!(value("(2+3)*4"), 20);
        assert_eq!(value("20-4-3"), 13);
        assert_eq!(value("20-(4-3)"), 19);
        assert_eq!(value("100/10/5"), 2);
        assert_eq!(value("7/2"), 3);
        assert_eq!(value(" 1 + 2 * ( 3 + 4 ) "), 15);
        assert_eq!(value("18446744073709551615"), u64::MAX);
    }

    #[test]
    fn disk_sectors_and_crc32() {
        assert_eq!(value("NUM_DISK_SECTORS"), 64);
        assert_eq!(value("NUM_DISK_SECTORS-33."), 31);
        assert_eq!(value("NUM_DISK_SECTORS-1"), 63);
        assert_eq!(value("(NUM_DISK_SECTORS-34.)*512/1024"), 15);

        let mut d = disk(64);
        let crc = Expr::parse("CRC32(1.,92.)").unwrap().eval(&mut d).unwrap();
        assert_eq!(crc, u64::from(crc32fast::hash(&d.bytes[512..512 + 92])));
        let backup = Expr::parse("CRC32(NUM_DISK_SECTORS-33., 32*512)")
            .unwrap()
            .eval(&mut d)
            .unwrap();
        assert_eq!(
            backup,
            u64::from(crc32fast::hash(&d.bytes[31 * 512..63 * 512]))
        );
        assert_eq!(d.crc_calls, 2);
        assert!(matches!(
            Expr::parse("CRC32(NUM_DISK_SECTORS,1)")
                .unwrap()
                .eval(&mut d),
            Err(EvalError::Context { offset: 0, .. })
        ));
    }

    #[test]
    fn canonical_text_round_trips() {
        for (input, canonical) in [
            ("NUM_DISK_SECTORS-33.", "NUM_DISK_SECTORS-33."),
            ("NUM_DISK_SECTORS-1", "NUM_DISK_SECTORS-1."),
            ("CRC32( 1 , 92. )", "CRC32(1.,92.)"),
            ("0x10-10.", "16.-10."),
            ("((2+3))*4", "(2.+3.)*4."),
            ("2+(3*4)", "2.+3.*4."),
            ("20-(4-3)", "20.-(4.-3.)"),
            ("(20-4)-3", "20.-4.-3."),
            ("8/(4/2)", "8./(4./2.)"),
        ] {
            let expr = Expr::parse(input).unwrap();
            assert_eq!(expr.as_str(), canonical, "{input}");
            assert_eq!(Expr::parse(canonical).unwrap(), expr);
            assert_eq!(value(input), value(canonical), "{input}");
            assert!(Expr::try_from(canonical.to_owned()).is_ok());
        }
        assert!(matches!(
            Expr::try_from("NUM_DISK_SECTORS-1".to_owned()),
            Err(ExprError::NotCanonical { .. })
        ));
    }

    #[test]
    fn parse_errors_name_the_place() {
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, ExprError::Empty)),
            ("   ", |e| matches!(e, ExprError::Empty)),
            (
                "NUM_SECTORS-1",
                |e| matches!(e, ExprError::UnknownIdentifier { offset: 0, name } if name == "NUM_SECTORS"),
            ),
            ("1+eval(2)", |e| {
                matches!(e, ExprError::UnknownIdentifier { offset: 2, .. })
            }),
            ("(1+2", |e| {
                matches!(
                    e,
                    ExprError::Expected {
                        offset: 4,
                        expected: "')'",
                        ..
                    }
                )
            }),
            ("1+2)", |e| {
                matches!(e, ExprError::Expected { offset: 3, .. })
            }),
            ("1+", |e| matches!(e, ExprError::Expected { offset: 2, .. })),
            ("-1", |e| matches!(e, ExprError::Expected { offset: 0, .. })),
            ("1 2", |e| {
                matches!(e, ExprError::Expected { offset: 2, .. })
            }),
            ("CRC32(1)", |e| {
                matches!(e, ExprError::Expected { offset: 7, .. })
            }),
            ("CRC32 1,2", |e| {
                matches!(e, ExprError::Expected { offset: 6, .. })
            }),
            ("1.5", |e| {
                matches!(e, ExprError::InvalidNumber { offset: 0, .. })
            }),
            ("12abc", |e| {
                matches!(e, ExprError::InvalidNumber { offset: 0, .. })
            }),
            ("0x", |e| matches!(e, ExprError::InvalidNumber { .. })),
            ("0x1g", |e| matches!(e, ExprError::InvalidNumber { .. })),
            ("0x10.", |e| matches!(e, ExprError::InvalidNumber { .. })),
            ("18446744073709551616", |e| {
                matches!(
                    e,
                    ExprError::InvalidNumber {
                        reason: "larger than 64 bits",
                        ..
                    }
                )
            }),
            ("1;2", |e| {
                matches!(e, ExprError::Expected { offset: 1, .. })
            }),
            ("1+\u{e9}", |e| {
                matches!(e, ExprError::Expected { offset: 2, .. })
            }),
        ];
        for (text, check) in cases {
            let err = Expr::parse(text).unwrap_err();
            assert!(check(&err), "{text:?}: {err:?}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn caps() {
        let long = format!("1{}", "+1".repeat(MAX_EXPR_LEN));
        assert!(matches!(Expr::parse(&long), Err(ExprError::TooLong { .. })));
        // Canonical "1." + "+1." * n must fit too.
        let terms = (MAX_EXPR_LEN - 2) / 3;
        let chain = format!("1{}", "+1".repeat(terms));
        assert_eq!(value(&chain), 1 + terms as u64);
        let grows = format!("1{}", "+1".repeat((MAX_EXPR_LEN - 1) / 2));
        assert!(matches!(
            Expr::parse(&grows),
            Err(ExprError::TooLong { len, .. }) if len > MAX_EXPR_LEN
        ));

        let nested = |n: usize| format!("{}1{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(value(&nested(MAX_DEPTH)), 1);
        assert!(matches!(
            Expr::parse(&nested(MAX_DEPTH + 1)),
            Err(ExprError::TooDeep { offset, .. }) if offset == MAX_DEPTH
        ));
        let crcs = format!(
            "{}1,1{}",
            "CRC32(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(matches!(Expr::parse(&crcs), Err(ExprError::TooDeep { .. })));
    }

    #[test]
    fn checked_arithmetic() {
        assert!(matches!(
            eval_err("1/0"),
            ExprError::DivisionByZero { offset: 2 }
        ));
        assert!(matches!(
            eval_err("NUM_DISK_SECTORS/(NUM_DISK_SECTORS-64)"),
            ExprError::DivisionByZero { offset: 16 }
        ));
        assert!(matches!(
            eval_err("18446744073709551615+1"),
            ExprError::Overflow { offset: 21 }
        ));
        assert!(matches!(
            eval_err("0x100000000*0x100000000"),
            ExprError::Overflow { .. }
        ));
        assert!(matches!(
            eval_err("NUM_DISK_SECTORS-65"),
            ExprError::Negative { offset: 16 }
        ));
        assert!(matches!(
            eval_err("CRC32(0,1048577)"),
            ExprError::Crc32TooLong {
                offset: 0,
                len: 1048577,
                ..
            }
        ));
    }
}
