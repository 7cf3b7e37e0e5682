//! Event types and the NATS-style patterns subscriptions use to select them.
//!
//! An event type is one or more dot-separated tokens (`order.paid`). A pattern may use `*` for
//! exactly one token and `>` (last position only) for one or more remaining tokens.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("pattern is empty")]
    Empty,
    #[error("pattern {0:?} has an empty token (leading, trailing or double dot)")]
    EmptyToken(String),
    #[error("pattern {0:?} uses '>' before the last token")]
    WildcardNotLast(String),
    #[error("pattern {0:?} has a wildcard inside a token; '*' and '>' must stand alone")]
    PartialWildcard(String),
    #[error("pattern {0:?} contains whitespace or a control character")]
    BadCharacter(String),
}

/// Checks that `event_type` is a concrete event type (no wildcards) usable as subject tokens.
pub fn validate_event_type(event_type: &str) -> Result<(), PatternError> {
    let pattern = Pattern::parse(event_type)?;
    if pattern
        .tokens
        .iter()
        .any(|t| !matches!(t, Token::Literal(_)))
    {
        return Err(PatternError::PartialWildcard(event_type.to_owned()));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    One,
    Rest,
}

/// A validated subscription pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(PatternError::BadCharacter(text.to_owned()));
        }
        let parts: Vec<&str> = text.split('.').collect();
        let last = parts.len() - 1;
        let mut tokens = Vec::with_capacity(parts.len());
        for (i, part) in parts.into_iter().enumerate() {
            let token = match part {
                "" => return Err(PatternError::EmptyToken(text.to_owned())),
                "*" => Token::One,
                ">" if i == last => Token::Rest,
                ">" => return Err(PatternError::WildcardNotLast(text.to_owned())),
                p if p.contains(['*', '>']) => {
                    return Err(PatternError::PartialWildcard(text.to_owned()));
                }
                p => Token::Literal(p.to_owned()),
            };
            tokens.push(token);
        }
        Ok(Self { tokens })
    }

    /// True when the pattern selects `event_type`.
    pub fn matches(&self, event_type: &str) -> bool {
        let mut tokens = event_type.split('.');
        for token in &self.tokens {
            match (token, tokens.next()) {
                (Token::Rest, Some(_)) => return true,
                (Token::One, Some(_)) => {}
                (Token::Literal(literal), Some(t)) if literal == t => {}
                _ => return false,
            }
        }
        tokens.next().is_none()
    }

    /// True when the pattern has no wildcard: it names exactly one event type.
    pub fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Literal(_)))
    }
}

/// A token trie mapping patterns to route targets, so a lookup costs the depth of the event type
/// rather than the number of subscriptions.
#[derive(Debug, Default, Clone)]
pub struct PatternMatcher<T> {
    root: Node<T>,
}

#[derive(Debug, Clone)]
struct Node<T> {
    literal: HashMap<String, Node<T>>,
    one: Option<Box<Node<T>>>,
    /// Targets of patterns ending in `>` at this depth.
    rest: Vec<T>,
    /// Targets of patterns ending exactly here.
    here: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self {
            literal: HashMap::new(),
            one: None,
            rest: Vec::new(),
            here: Vec::new(),
        }
    }
}

impl<T: Copy + Ord> PatternMatcher<T> {
    pub fn insert(&mut self, pattern: &Pattern, target: T) {
        let mut node = &mut self.root;
        for token in &pattern.tokens {
            node = match token {
                Token::Literal(lit) => node.literal.entry(lit.clone()).or_default(),
                Token::One => node.one.get_or_insert_with(Default::default),
                Token::Rest => {
                    node.rest.push(target);
                    return;
                }
            };
        }
        node.here.push(target);
    }

    /// Targets matching `event_type`, sorted and without duplicates.
    pub fn matches(&self, event_type: &str) -> Vec<T> {
        let tokens: Vec<&str> = event_type.split('.').collect();
        let mut out = Vec::new();
        Self::walk(&self.root, &tokens, &mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    fn walk(node: &Node<T>, tokens: &[&str], out: &mut Vec<T>) {
        let Some((first, rest)) = tokens.split_first() else {
            out.extend_from_slice(&node.here);
            return;
        };
        out.extend_from_slice(&node.rest);
        if let Some(child) = node.literal.get(*first) {
            Self::walk(child, rest, out);
        }
        if let Some(child) = &node.one {
            Self::walk(child, rest, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(patterns: &[&str]) -> PatternMatcher<usize> {
        let mut m = PatternMatcher::default();
        for (i, p) in patterns.iter().enumerate() {
            m.insert(&Pattern::parse(p).unwrap_or_else(|e| panic!("{e}")), i);
        }
        m
    }

    #[test]
    fn literal_and_wildcards() {
        let m = matcher(&["order.paid", "invoice.*", "payment.>", "*.paid", ">"]);
        assert_eq!(m.matches("order.paid"), vec![0, 3, 4]);
        assert_eq!(m.matches("invoice.created"), vec![1, 4]);
        assert_eq!(m.matches("invoice.created.late"), vec![4]);
        assert_eq!(m.matches("payment"), vec![4]);
        assert_eq!(m.matches("payment.failed"), vec![2, 4]);
        assert_eq!(m.matches("payment.failed.card.declined"), vec![2, 4]);
        assert_eq!(m.matches("order"), vec![4]);
    }

    #[test]
    fn a_single_pattern_agrees_with_the_trie() {
        let patterns = ["order.paid", "invoice.*", "payment.>", "*.paid", ">", "*"];
        let types = [
            "order.paid",
            "invoice.x",
            "invoice.x.y",
            "payment",
            "payment.a.b",
            "a",
        ];
        for (i, pattern) in patterns.iter().enumerate() {
            let parsed = Pattern::parse(pattern).unwrap_or_else(|e| panic!("{e}"));
            let trie = matcher(&patterns);
            for event_type in types {
                assert_eq!(
                    parsed.matches(event_type),
                    trie.matches(event_type).contains(&i),
                    "{pattern} vs {event_type}"
                );
            }
        }
        assert!(Pattern::parse("a.b").is_ok_and(|p| p.is_literal()));
        assert!(Pattern::parse("a.*").is_ok_and(|p| !p.is_literal()));
    }

    #[test]
    fn duplicates_are_merged() {
        let mut m = PatternMatcher::default();
        m.insert(&Pattern::parse("a.*").unwrap_or_else(|e| panic!("{e}")), 7);
        m.insert(&Pattern::parse("a.b").unwrap_or_else(|e| panic!("{e}")), 7);
        assert_eq!(m.matches("a.b"), vec![7]);
    }

    #[test]
    fn invalid_patterns_are_rejected_with_reason() {
        assert_eq!(Pattern::parse(""), Err(PatternError::Empty));
        assert!(matches!(
            Pattern::parse("a..b"),
            Err(PatternError::EmptyToken(_))
        ));
        assert!(matches!(
            Pattern::parse(".a"),
            Err(PatternError::EmptyToken(_))
        ));
        assert!(matches!(
            Pattern::parse("a.>.b"),
            Err(PatternError::WildcardNotLast(_))
        ));
        assert!(matches!(
            Pattern::parse("ord*"),
            Err(PatternError::PartialWildcard(_))
        ));
        assert!(matches!(
            Pattern::parse("a b"),
            Err(PatternError::BadCharacter(_))
        ));
    }

    #[test]
    fn event_types_have_no_wildcards() {
        assert!(validate_event_type("order.paid").is_ok());
        assert!(validate_event_type("order.*").is_err());
        assert!(validate_event_type("order.").is_err());
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        /// The definition, token by token: what the trie must agree with.
        fn naive(pattern: &[&str], event: &[&str]) -> bool {
            match (pattern.split_first(), event.split_first()) {
                (Some((&">", [])), Some(_)) => true,
                (Some((&"*", p)), Some((_, e))) => naive(p, e),
                (Some((literal, p)), Some((token, e))) => literal == token && naive(p, e),
                (None, None) => true,
                _ => false,
            }
        }

        fn pattern() -> impl Strategy<Value = String> {
            let tokens = (
                prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "*"]), 1..4),
                any::<bool>(),
            )
                .prop_map(|(tokens, rest)| {
                    let mut text = tokens.join(".");
                    if rest {
                        text.push_str(".>");
                    }
                    text
                });
            prop_oneof![9 => tokens, 1 => Just(">".to_owned())]
        }

        fn event_type() -> impl Strategy<Value = String> {
            prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..6)
                .prop_map(|tokens| tokens.join("."))
        }

        proptest! {
            #[test]
            fn the_trie_matches_exactly_what_the_definition_matches(
                patterns in prop::collection::vec(pattern(), 0..8),
                event in event_type(),
            ) {
                let mut matcher = PatternMatcher::default();
                for (index, text) in patterns.iter().enumerate() {
                    let parsed = Pattern::parse(text).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    matcher.insert(&parsed, index);
                }
                let event_tokens: Vec<&str> = event.split('.').collect();
                let expected: Vec<usize> = patterns
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| naive(&p.split('.').collect::<Vec<_>>(), &event_tokens))
                    .map(|(i, _)| i)
                    .collect();
                prop_assert_eq!(matcher.matches(&event), expected);
            }

            #[test]
            fn parsing_never_panics_and_accepts_only_well_formed_tokens(text in "[ab.*> \t]{0,12}") {
                if Pattern::parse(&text).is_ok() {
                    prop_assert!(!text.is_empty() && !text.contains(char::is_whitespace));
                    prop_assert!(text.split('.').all(|t| !t.is_empty()));
                }
            }
        }
    }
}
