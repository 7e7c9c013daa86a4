//! [`FormatError`]: why a flow key or action list did not parse.

use thiserror::Error;

/// A flow key or action list that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatError {
    /// The text does not follow the grammar.
    #[error("syntax error at offset {offset}, near {near:?}: expected {expected}")]
    Syntax { offset: usize, near: String, expected: String },
    /// A number does not fit the field it is for.
    #[error("value out of range at offset {offset}, near {near:?}: {what}")]
    OutOfRange { offset: usize, near: String, what: String },
    /// Valid OVS syntax that weaver's typed model does not carry.
    #[error("not supported at offset {offset}, near {near:?}: {what}")]
    Unsupported { offset: usize, near: String, what: String },
    /// Nested deeper than OVS allows.
    #[error("nested more than {max} levels deep at offset {offset}")]
    TooDeep { offset: usize, max: usize },
}

pub(super) type PResult<T> = Result<T, FormatError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::odp::format::{parse_actions, parse_key};

    #[test]
    fn errors_point_at_the_text() {
        let e = parse_key("in_port(1),eth(src=00:01:02:03:04:05,foo=1)").unwrap_err();
        let FormatError::Syntax { offset, near, .. } = &e else { panic!("{e:?}") };
        assert_eq!((*offset, near.as_str()), (37, "foo=1)"));
        assert!(e.to_string().contains("offset 37"), "{e}");
        assert!(matches!(parse_key("mpls(label=1)"), Err(FormatError::Unsupported { .. })));
        assert!(matches!(parse_actions("ct(commit)"), Err(FormatError::Unsupported { .. })));
        assert!(matches!(parse_actions("1 2x"), Err(FormatError::Syntax { .. })));
        let deep = format!("{}{}", "encap(".repeat(40), ")".repeat(40));
        assert!(matches!(parse_key(&deep), Err(FormatError::TooDeep { .. })));
        let deep = format!("{}1{}", "clone(".repeat(40), ")".repeat(40));
        assert!(matches!(parse_actions(&deep), Err(FormatError::TooDeep { .. })));
        // odp.at: 33 nested encaps are an error, as are 32; 31 are fine.
        assert!(parse_key(&format!("{}{}", "encap(".repeat(32), ")".repeat(32))).is_err());
        assert!(parse_key(&format!("{}{}", "encap(".repeat(31), ")".repeat(31))).is_ok());
    }
}
