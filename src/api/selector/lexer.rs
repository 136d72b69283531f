//! Tokenizer for the label selector string syntax.
//!
//! Invariant: splits input exactly where upstream's lexer does: whitespace separates,
//! `= ! ( ) , > <` start operator tokens (longest known operator wins), anything else is an
//! identifier unless it spells `in` or `notin`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token {
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits `input` into tokens, always ending with `EndOfString` (whose literal is empty).
pub(super) fn scan(input: &str) -> Vec<(Token, String)> {
    let bytes = input.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < bytes.len() && is_whitespace(bytes[pos]) {
            pos += 1;
        }
        if pos >= bytes.len() {
            out.push((Token::EndOfString, String::new()));
            return out;
        }
        if is_special(bytes[pos]) {
            // Grow the operator while the longer spelling is still a known operator.
            let start = pos;
            let mut best: Option<(Token, usize)> = None;
            let mut end = pos;
            while end < bytes.len() && is_special(bytes[end]) {
                end += 1;
                match keyword(&input[start..end]) {
                    Some(tok) => best = Some((tok, end)),
                    None if best.is_some() => break,
                    None => {}
                }
            }
            // Every single special character is itself an operator, so `best` is set.
            let (tok, stop) = best.unwrap_or((Token::Identifier, end));
            out.push((tok, input[start..stop].to_string()));
            pos = stop;
        } else {
            let start = pos;
            while pos < bytes.len() && !is_special(bytes[pos]) && !is_whitespace(bytes[pos]) {
                pos += 1;
            }
            let lit = &input[start..pos];
            out.push((keyword(lit).unwrap_or(Token::Identifier), lit.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Token> {
        scan(s).into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn operators_take_the_longest_known_spelling() {
        use Token::*;
        assert_eq!(
            toks("a==b"),
            vec![Identifier, DoubleEquals, Identifier, EndOfString]
        );
        assert_eq!(
            toks("a!=b"),
            vec![Identifier, NotEquals, Identifier, EndOfString]
        );
        assert_eq!(toks("!a"), vec![DoesNotExist, Identifier, EndOfString]);
        assert_eq!(
            toks("a===b"),
            vec![Identifier, DoubleEquals, Equals, Identifier, EndOfString]
        );
        assert_eq!(toks("=("), vec![Equals, OpenPar, EndOfString]);
    }

    #[test]
    fn in_and_notin_are_keywords_only_as_whole_words() {
        use Token::*;
        assert_eq!(
            toks(" x in (a, b) "),
            vec![
                Identifier,
                In,
                OpenPar,
                Identifier,
                Comma,
                Identifier,
                ClosedPar,
                EndOfString
            ]
        );
        assert_eq!(toks("inx notin"), vec![Identifier, NotIn, EndOfString]);
    }
}
